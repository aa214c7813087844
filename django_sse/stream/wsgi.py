"""The stream of a view served under WSGI: a generator the server writes chunk by chunk.

Under gevent the stream is a greenlet and ``mailbox.wait()`` switches to
others; elsewhere (``runserver``, a sync worker) it blocks the request's
thread. The server calls ``close()`` on the response in ``finally``, which
closes this generator: its ``finally:`` releases the stream. Every hook runs
here, in the stream's greenlet or thread: none needs offloading.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core.database import release_connections
from ..core.mailbox import EndReason, Mailbox
from .connection import ClientConnection
from .engine import StreamEngine, StreamView

# A client that acknowledges nothing for two heartbeat intervals, and at least this
# many seconds, is gone (see ClientConnection.limit_unacknowledged).
MIN_UNACKNOWLEDGED = 5.0


def stream(view: StreamView, mailbox: Mailbox, meta: dict[str, Any], name: str) -> Iterator[bytes]:
    """Yield the chunks of one stream: its opening, what it delivers, and its closing."""
    client = ClientConnection(meta)
    engine = StreamEngine(view, mailbox, name)
    try:
        release_connections()
        client.watch(lambda: mailbox.end(EndReason.CLIENT_GONE))
        client.limit_unacknowledged(max(2 * engine.wheel.interval, MIN_UNACKNOWLEDGED))
        mailbox.on_overflow(client.hang_up)
        engine.arm()
        yield engine.begin()
        while True:  # the hot path: one pass per write
            mailbox.wait()
            chunks = engine.rendered(view.render(mailbox.take(), mailbox))
            if engine.heartbeat_due():
                beat = engine.heartbeat(chunks, client.gone())
                chunks = engine.idled(view.idle(mailbox)) if beat is None else beat
            ending = engine.writing(chunks)
            yield from chunks
            if engine.written(chunks, ending):
                break
        if engine.tells_client():
            yield engine.closed(view.closing(mailbox))
            if engine.sheds_connection():
                client.close_after_response()
    finally:
        client.unwatch()
        engine.release()
        if engine.started:
            view.stop()
        engine.ended()
