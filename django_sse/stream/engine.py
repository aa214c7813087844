"""The stream engine: one stream's decisions, from its opening to its end, with no I/O.

A driver (``wsgi`` under WSGI and gevent, ``asgi`` on an event loop) waits
on the stream's mailbox, calls the view's hooks (where they may block, off
the loop) and writes what ``StreamEngine`` returns. The engine decides what
to write and when the stream ends, and keeps the books: the stream's
metrics, its place on the heartbeat wheel, its slot in the registry.

One step of the stream, as both drivers run it::

    chunks = engine.rendered(view.render(mailbox.take(), mailbox))
    if engine.heartbeat_due():
        chunks = engine.heartbeat(chunks, client_gone)
        if chunks is None:  # silence: idle() may have something to say
            chunks = engine.idled(view.idle(mailbox))
    ending = engine.writing(chunks)
    ... write each chunk ...
    if engine.written(chunks, ending): the stream ends
"""

from __future__ import annotations

import enum
import time
from typing import Any, Protocol

from .. import metrics
from ..core.heartbeat import wheel_for
from ..core.mailbox import EndReason, Mailbox
from ..core.runtime import streams

#: The comment sent after a heartbeat interval of silence (a comment fires no listener).
HEARTBEAT = b":\n\n"


class Blocking(enum.Flag):
    """The steps of a stream that may block, so that an event loop runs them in a thread.

    ``OPENING`` is ``start()`` with the first chunk (``opening()`` and the
    initial events), ``RENDER`` is ``render()``, ``IDLE`` is ``idle()``,
    ``CLOSING`` is ``closing()`` and ``STOP`` is ``stop()``.
    """

    NONE = 0
    OPENING = enum.auto()
    RENDER = enum.auto()
    IDLE = enum.auto()
    CLOSING = enum.auto()
    STOP = enum.auto()


class StreamView(Protocol):
    """What the engine and its drivers need from a stream's view (``BaseSseView`` provides it)."""

    def get_heartbeat_interval(self) -> float: ...

    def get_max_lifetime(self) -> float | None: ...

    def start(self, mailbox: Mailbox) -> None: ...

    def stop(self) -> None: ...

    def opening_chunk(self) -> bytes:
        """Return the stream's first write: ``opening()`` and, for a new client, its initial events."""

    def render(self, items: list[Any], mailbox: Mailbox) -> list[bytes]: ...

    def idle(self, mailbox: Mailbox) -> bytes: ...

    def closing(self, mailbox: Mailbox) -> bytes: ...

    def blocking_steps(self, items: list[Any]) -> Blocking:
        """Return the steps that may block, for the items just taken (``[]`` outside a step)."""

    @property
    def iterator_is_async(self) -> bool: ...


class StreamEngine:
    """The state of one stream and the decisions that turn its mailbox into bytes.

    Create it when the stream starts to run (its first chunk is asked for),
    not when its response is made: it records the stream opened, and
    ``ended()`` in the driver's ``finally:`` records its end.
    """

    __slots__ = ("view", "mailbox", "name", "wheel", "opened", "started")

    def __init__(self, view: StreamView, mailbox: Mailbox, name: str) -> None:
        self.view = view
        self.mailbox = mailbox
        #: The ``view`` label of the stream's metrics.
        self.name = name
        self.wheel = wheel_for(view.get_heartbeat_interval())
        #: Whether ``start()`` has run, so ``stop()`` is owed.
        self.started = False
        metrics.record_stream_opened(name)
        self.opened = time.monotonic()

    # The opening ------------------------------------------------------------

    def arm(self) -> None:
        """Have the heartbeat wheel poke the mailbox when silent, and end it at its lifetime."""
        lifetime = self.view.get_max_lifetime()
        self.wheel.add(self.mailbox, None if lifetime is None else time.monotonic() + lifetime)

    def begin(self) -> bytes:
        """Run ``start()`` unless it ran already, and return the first chunk (counted as sent)."""
        if not self.started:
            self.view.start(self.mailbox)
            self.started = True
        opening = self.view.opening_chunk()
        metrics.counts.bytes_sent += len(opening)
        return opening

    # Each step --------------------------------------------------------------

    @staticmethod
    def rendered(chunks: list[bytes]) -> list[bytes]:
        """Return what ``render()`` returned, less empty chunks (nothing sent: no heartbeat put off)."""
        return [chunk for chunk in chunks if chunk]

    def heartbeat_due(self) -> bool:
        """Return whether a heartbeat interval passed in silence, on a stream that goes on."""
        mailbox = self.mailbox
        return mailbox.heartbeat_due and mailbox.end_reason is None

    def heartbeat(self, chunks: list[bytes], client_gone: bool) -> list[bytes] | None:
        """Return what to write after a silent interval, or None to ask ``idle()`` (see ``idled()``).

        A client found gone ends the stream instead: nothing is written.
        """
        self.mailbox.heartbeat_sent()
        if client_gone:
            self.mailbox.end(EndReason.CLIENT_GONE)
            return []
        return chunks if chunks else None

    @staticmethod
    def idled(idle: bytes) -> list[bytes]:
        """Return what to write for what ``idle()`` returned: that, or a heartbeat comment."""
        if idle:
            return [idle]
        metrics.counts.heartbeats += 1
        return [HEARTBEAT]

    def writing(self, chunks: list[bytes]) -> bool:
        """Count this step's ``chunks`` as sent (before they are written); return whether the stream ends after them."""
        if chunks:
            metrics.counts.bytes_sent += sum(map(len, chunks))
        return self.mailbox.end_reason is not None

    def written(self, chunks: list[bytes], ending: bool) -> bool:
        """After a step's chunks are written: restart the silence; return whether the stream ends."""
        if chunks:
            self.mailbox.mark_sent()
        return ending

    # The end ----------------------------------------------------------------

    def tells_client(self) -> bool:
        """Return whether the stream's client is told of its end (then ``closing()`` is written)."""
        reason = self.mailbox.end_reason
        return reason is not None and reason.tells_client

    def closed(self, closing: bytes) -> bytes:
        """Return ``closing()``'s chunk, counted as sent."""
        metrics.counts.bytes_sent += len(closing)
        return closing

    def sheds_connection(self) -> bool:
        """Return whether the connection should close after the response, not be kept alive.

        Reconnecting on a kept-alive connection would come back to this
        worker, which is stopping or should shed load.
        """
        reason = self.mailbox.end_reason
        return streams.closing or (reason is not None and reason.sheds_connection)

    def release(self) -> None:
        """Give back the stream's wheel place and registry slot; runs however it ended.

        A producer thread, which ``stop()`` cannot kill, stops at its next
        ``yield`` once the mailbox has ended.
        """
        self.wheel.discard(self.mailbox)
        self.mailbox.end(EndReason.CLOSED)
        streams.discard(self.mailbox)

    def ended(self) -> None:
        """Record the stream's end in the metrics (after ``stop()``)."""
        reason = (self.mailbox.end_reason or EndReason.CLOSED).value
        channels = list(getattr(self.view, "channels", ()))
        metrics.record_stream_ended(self.name, reason, channels, time.monotonic() - self.opened)
