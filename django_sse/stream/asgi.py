"""The stream of a view served under ASGI: an async generator that Django sends chunk by chunk.

Django's ``ASGIHandler`` sends each chunk of an async ``streaming_content``
as one ``http.response.body`` message as soon as it is yielded, and cancels
the task that sends it when the client disconnects (``http.disconnect``):
the ``CancelledError`` (or the ``aclose()`` that follows) runs this
generator's ``finally:``, which releases the stream at once.

Everything but the wait runs as under gevent: the hub, the broker's reader
and the heartbeat wheel are threads that put into the stream's mailbox and
set its ``AsyncWakeup``. What may block runs in the loop's executor, never
on the loop: a catch-up from history, a permission recheck, user code
(a plain ``iterator()`` and its thread, an overridden opening or initial
events), and subscribing and unsubscribing where the broker says they may
wait (``Broker.blocking_subscriptions``: the cluster's). The rest stays on
the loop: the hot path (live events, heartbeats), and a ``RedisQueueView``'s
``start()`` and ``stop()`` on one Redis or the memory broker (the hub's
lock, a command written), which would each cost a thread hop per stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..core.concurrency import offload, offload_soon, release_request_thread
from ..core.heartbeat import wheel_for
from ..core.mailbox import END, Mailbox
from ..servers import async_stream_opening
from .connection import ClientConnection

if TYPE_CHECKING:
    from ..views import BaseSseView

logger = logging.getLogger(__name__)


class _Begin:
    """The stream's first step: ``start()``, then the opening chunk (in a thread if ``_opening_blocks()``)."""

    __slots__ = ("view", "mailbox", "started")

    def __init__(self, view: BaseSseView, mailbox: Mailbox) -> None:
        self.view = view
        self.mailbox = mailbox
        self.started = False

    def __call__(self) -> bytes:
        view = self.view
        if not view.iterator_is_async:  # an async iterator() was started on the loop
            view.start(self.mailbox)
            self.started = True
        return view.opening() + view._opening_initial()


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


async def stream(view: BaseSseView, mailbox: Mailbox) -> AsyncIterator[bytes]:
    """Yield the chunks of one stream, as ``BaseSseView._stream`` does, waiting on the event loop."""
    client = ClientConnection(view.request.META)  # no socket under ASGI: it watches nothing
    wheel = wheel_for(view.get_heartbeat_interval())
    name = view._metrics_name()
    metrics.record_stream_opened(name)
    opened = time.monotonic()
    counts = metrics.counts
    begin = _Begin(view, mailbox)
    hang_up: _HangUp | None = None
    try:
        async_stream_opening()
        release_request_thread()
        hang_up = _HangUp(mailbox)
        view._arm_wheel(mailbox, wheel)
        if view.iterator_is_async:
            view.start(mailbox)
            begin.started = True
        opening = await offload(begin) if view._opening_blocks() else begin()
        counts.bytes_sent += len(opening)
        yield opening
        while True:
            await mailbox.wait_async()
            items = mailbox.take()
            if view._render_blocks(items):
                rendered = await offload(view.render, items, mailbox)
            else:
                rendered = view.render(items, mailbox)
            chunks = [chunk for chunk in rendered if chunk]
            ending = mailbox.end_reason is not None
            if mailbox.heartbeat_due and not ending:
                if view._idle_blocks():
                    chunks = await offload(view._heartbeat, mailbox, client, chunks)
                else:
                    chunks = view._heartbeat(mailbox, client, chunks)
                ending = mailbox.end_reason is not None
            for chunk in chunks:
                counts.bytes_sent += len(chunk)
                yield chunk
            if chunks:
                mailbox.mark_sent()
            if ending:
                break
        closing = view._last_chunk(mailbox)
        if closing is not None:
            yield closing
    finally:
        if hang_up is not None:
            hang_up.release()
        view._release(mailbox, client, wheel, started=False)
        if begin.started:
            stop(view)
        view._record_end(mailbox, name, opened)


def stop(view: BaseSseView) -> None:
    """Call ``view.stop()``: here if it cannot block, else in the loop's executor."""
    if not view._stop_blocks():
        try:
            view.stop()
        except Exception:
            logger.exception("Releasing a stream failed.")
        return
    # E.g. a user's stop(), or RedisQueueView.stop() on a cluster, whose unsubscribing
    # asks redis-py's pub/sub of a shard under its locks: the stream has ended already.
    offload_soon(view.stop, "Releasing a stream")


async def run_iterator(
    view: BaseSseView, generator: AsyncGenerator[Any, Any], mailbox: Mailbox
) -> None:
    """Run an ``async def iterator()`` on the event loop, putting each ``yield``'s events into ``mailbox``.

    ``view.stop()`` cancels the task that runs this: ``CancelledError`` is
    raised where the generator awaits, so its ``finally:`` runs at once.
    """
    from ..views import hand_over  # views imports this module

    sse = view.sse
    counted = sse.events_added
    try:
        async for _ in generator:
            counted = hand_over(sse, mailbox, counted)
            if mailbox.ending:
                break
        hand_over(sse, mailbox, counted)
    except Exception:
        logger.exception("%s.iterator() raised; ending the stream.", type(view).__name__)
    finally:
        await generator.aclose()
        mailbox.put_control(END)
