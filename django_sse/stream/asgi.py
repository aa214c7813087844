"""The stream of a view served under ASGI: an async generator that Django sends chunk by chunk.

Django's ``ASGIHandler`` sends each chunk of an async ``streaming_content``
as one ``http.response.body`` message as soon as it is yielded, and cancels
the task that sends it when the client disconnects (``http.disconnect``):
the ``CancelledError`` (or the ``aclose()`` that follows) runs this
generator's ``finally:``, which releases the stream at once.

Everything but the wait runs as under gevent (``stream.engine`` decides;
this driver only waits and writes): the hub, the broker's reader and the
heartbeat wheel are threads that put into the stream's mailbox and set its
``AsyncWakeup``. The hook rule: every hook a user overrides runs off the
loop, through ``offload`` (the runtime's executor); the library's own
defaults run on it, except the steps the view's ``blocking_steps()``
declares (a catch-up from history, a permission recheck, a plain
``iterator()``'s thread, and subscribing and unsubscribing where the broker
says they may wait, ``Broker.blocking_subscriptions``: the cluster's). The
hot path (live events, heartbeats) stays on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from ..core.concurrency import offload, offload_soon, release_request_thread
from ..core.mailbox import Mailbox
from ..servers import async_stream_opening
from .engine import Blocking, StreamEngine, StreamView

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


#: Seconds an overflowed stream has to end by itself before its sending is cancelled.
OVERFLOW_GRACE = 0.5


class _HangUp:
    """Ends an overflowed stream: cleanly if it can still write, else by cancelling its sending.

    A stream that overflowed because a burst outran it wakes, writes its
    closing chunk and ends. One blocked in ``send()`` on a client that stopped
    reading cannot: after ``OVERFLOW_GRACE`` seconds the task that sends the
    response (Django's) is cancelled, as the socket's shutdown does under
    WSGI; uvicorn then closes the connection (logging that the response was
    not completed).
    """

    __slots__ = ("_task", "finished")

    def __init__(self, mailbox: Mailbox) -> None:
        self._task = asyncio.current_task()
        self.finished = False
        if self._task is not None:
            mailbox.on_overflow(self._overflowed)

    def _overflowed(self) -> None:  # from any thread
        task = self._task
        if task is None:
            return
        try:
            task.get_loop().call_soon_threadsafe(self._arm)
        except RuntimeError:
            pass  # the loop is closed: so is the connection

    def _arm(self) -> None:
        if self._task is not None:
            self._task.get_loop().call_later(OVERFLOW_GRACE, self._cancel)

    def _cancel(self) -> None:
        if not self.finished and self._task is not None:
            self._task.cancel()

    def release(self) -> None:
        """The stream has ended: forget the task (a cancelled one holds its frames, the response's)."""
        self.finished = True
        self._task = None


async def _call(blocks: bool, hook: Callable[..., _T], *args: Any) -> _T:
    """Call ``hook(*args)``: off the loop if it may block, else here."""
    if blocks:
        result: _T = await offload(hook, *args)
        return result
    return hook(*args)


async def stream(view: StreamView, mailbox: Mailbox, name: str) -> AsyncIterator[bytes]:
    """Yield the chunks of one stream, as ``wsgi.stream`` does, waiting on the event loop."""
    engine = StreamEngine(view, mailbox, name)
    hang_up: _HangUp | None = None
    try:
        async_stream_opening()
        release_request_thread()
        hang_up = _HangUp(mailbox)
        engine.arm()
        if view.iterator_is_async:  # its task must be created on the loop
            view.start(mailbox)
            engine.started = True
        yield await _call(Blocking.OPENING in view.blocking_steps([]), engine.begin)
        while True:
            await mailbox.wait_async()
            items = mailbox.take()
            if Blocking.RENDER in view.blocking_steps(items):
                rendered = await offload(view.render, items, mailbox)
            else:  # the hot path: no coroutine to await
                rendered = view.render(items, mailbox)
            chunks = engine.rendered(rendered)
            if engine.heartbeat_due():
                beat = engine.heartbeat(chunks, False)  # no socket to peek at under ASGI
                if beat is None:
                    blocks = Blocking.IDLE in view.blocking_steps([])
                    beat = engine.idled(await _call(blocks, view.idle, mailbox))
                chunks = beat
            ending = engine.writing(chunks)
            for chunk in chunks:
                yield chunk
            if engine.written(chunks, ending):
                break
        if engine.tells_client():
            blocks = Blocking.CLOSING in view.blocking_steps([])
            yield engine.closed(await _call(blocks, view.closing, mailbox))
    finally:
        if hang_up is not None:
            hang_up.release()
        engine.release()
        if engine.started:
            stop(view)
        engine.ended()


def stop(view: StreamView) -> None:
    """Call ``view.stop()``: here if it cannot block, else in the runtime's executor."""
    if Blocking.STOP not in view.blocking_steps([]):
        try:
            view.stop()
        except Exception:
            logger.exception("Releasing a stream failed.")
        return
    # E.g. a user's stop(), or RedisQueueView.stop() on a cluster, whose unsubscribing
    # asks redis-py's pub/sub of a shard under its locks: the stream has ended already.
    offload_soon(view.stop, "Releasing a stream", logger)
