"""The stream engine's decisions (no server, no I/O) and the one rule for user hooks under ASGI.

``django_sse.stream.engine.StreamEngine`` decides what a stream writes and
when it ends; the WSGI and ASGI drivers only wait and write. These tests
drive the engine by hand with a real view and mailbox, and check the hook
rule the hooks' docstrings state: under ASGI every hook a subclass
overrides runs off the event loop, the library's own run on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.test import AsyncRequestFactory, RequestFactory

from django_sse import metrics
from django_sse.core.mailbox import EndReason, Mailbox
from django_sse.core.runtime import streams
from django_sse.redisqueue import RedisQueueView
from django_sse.stream.engine import HEARTBEAT, Blocking, StreamEngine
from django_sse.testing import memory_broker
from django_sse.views import BaseSseView


class _Ticks(BaseSseView):
    retry = 1500

    def iterator(self) -> Iterator[None]:
        yield


def _engine(view_class: type[BaseSseView] = _Ticks) -> tuple[StreamEngine, Mailbox, BaseSseView]:
    view = view_class()
    view.setup(RequestFactory().get("/engine/"))
    mailbox = Mailbox(100)
    assert streams.add(mailbox, None, None) is None
    return StreamEngine(view, mailbox, "engine-test"), mailbox, view


def _finish(engine: StreamEngine) -> None:
    """End the stream as the driver's ``finally:`` and the server's ``close()`` would."""
    engine.release()
    engine.ended()
    streams.closed(engine.mailbox)  # the response is closed: no open response left behind


def test_the_opening_is_the_retry_hint_and_a_comment_and_starts_the_producer_once():
    engine, mailbox, view = _engine()
    sent = metrics.counts.bytes_sent
    try:
        first = engine.begin()
        assert first == b"retry: 1500\n\n" + HEARTBEAT
        assert engine.started
        assert metrics.counts.bytes_sent - sent == len(first)
    finally:
        view.stop()
        _finish(engine)


def test_a_silent_interval_writes_the_chunks_if_any_else_asks_idle_else_a_heartbeat():
    engine, mailbox, _ = _engine()
    try:
        assert engine.heartbeat([b"data: x\n\n"], client_gone=False) == [b"data: x\n\n"]
        assert engine.heartbeat([], client_gone=False) is None  # silence: idle() is asked
        beats = metrics.counts.heartbeats
        assert engine.idled(b"") == [HEARTBEAT]
        assert metrics.counts.heartbeats == beats + 1
        assert engine.idled(b": idle\n\n") == [b": idle\n\n"]
        assert metrics.counts.heartbeats == beats + 1  # what idle() said is no heartbeat
        assert mailbox.end_reason is None
    finally:
        _finish(engine)


def test_a_client_found_gone_at_a_heartbeat_ends_the_stream_with_nothing_written():
    engine, mailbox, _ = _engine()
    try:
        assert engine.heartbeat([b"data: x\n\n"], client_gone=True) == []
        assert mailbox.end_reason is EndReason.CLIENT_GONE
        assert engine.writing([]) is True
        assert engine.tells_client() is False  # nobody to tell
    finally:
        _finish(engine)


@pytest.mark.parametrize(
    ("reason", "tells", "sheds"),
    [
        (EndReason.SHUTDOWN, True, True),
        (EndReason.MAX_LIFETIME, True, True),
        (EndReason.SOURCE_FINISHED, True, False),
        (EndReason.PERMISSION_REVOKED, True, False),
        (EndReason.CLIENT_GONE, False, False),
    ],
)
def test_how_a_stream_ends_decides_its_closing_chunk_and_its_connection(reason, tells, sheds):
    engine, mailbox, _ = _engine()
    try:
        assert engine.writing([b"data: last\n\n"]) is False  # still going before the end
        mailbox.end(reason)
        assert engine.writing([]) is True
        assert engine.tells_client() is tells
        assert engine.sheds_connection() is sheds
    finally:
        _finish(engine)


def test_release_gives_the_registry_slot_back_and_ends_the_mailbox():
    engine, mailbox, _ = _engine()
    held = len(streams), streams.open_responses()
    _finish(engine)
    assert (len(streams), streams.open_responses()) == (held[0] - 1, held[1] - 1)
    assert mailbox.end_reason is EndReason.CLOSED


# --- which steps may block: the one declaration a view makes ---------------------


class _AsyncTicks(BaseSseView):
    async def iterator(self) -> AsyncIterator[None]:
        yield


class _AsyncTicksRendered(_AsyncTicks):
    def render(self, items: list[Any], mailbox: Mailbox) -> list[bytes]:
        return super().render(items, mailbox)


class _ChannelClosing(RedisQueueView):
    def closing(self, mailbox: Mailbox) -> bytes:
        return super().closing(mailbox)


@pytest.mark.parametrize(
    ("view_class", "steps"),
    [
        (_Ticks, Blocking.OPENING),  # a plain iterator() starts a thread
        (_AsyncTicks, Blocking.NONE),  # the library's own hooks: on the loop
        (_AsyncTicksRendered, Blocking.RENDER),
        (_ChannelClosing, Blocking.CLOSING),  # RedisQueueView's own start/render stay on it
    ],
)
def test_the_steps_that_may_block_are_the_overridden_hooks(view_class, steps):
    view = view_class()
    view.setup(RequestFactory().get("/steps/"))
    with memory_broker():
        assert view.blocking_steps([]) == steps


# --- the hook rule, seen from the hooks themselves ---------------------------------


class _RecordingView(BaseSseView):
    """An async iterator (on the loop) and overridden render() and closing() that note their thread."""

    threads: dict[str, set[str]] = {}

    async def iterator(self) -> AsyncIterator[None]:
        self.threads.setdefault("iterator", set()).add(threading.current_thread().name)
        self.sse.add_message("tick", "1")
        yield

    def render(self, items: list[Any], mailbox: Mailbox) -> list[bytes]:
        self.threads.setdefault("render", set()).add(threading.current_thread().name)
        return super().render(items, mailbox)

    def closing(self, mailbox: Mailbox) -> bytes:
        self.threads.setdefault("closing", set()).add(threading.current_thread().name)
        return super().closing(mailbox)


def test_under_asgi_overridden_hooks_run_off_the_loop_and_an_async_iterator_on_it():
    threads: dict[str, set[str]] = {}
    response = _RecordingView.as_view(threads=threads, retry=100)(
        AsyncRequestFactory().get("/recording/")
    )

    async def read_all() -> bytes:
        body = b""
        async for chunk in response:
            body += chunk
        return body

    body = asyncio.run(asyncio.wait_for(read_all(), 10))
    response.close()
    loop_thread = threading.main_thread().name  # asyncio.run's loop runs in this thread
    assert b"event: tick\ndata: 1\n\n" in body
    assert body.endswith(b"retry: 100\n\n")  # the iterator finished: closing() was written
    assert threads["iterator"] == {loop_thread}
    assert threads["render"] and loop_thread not in threads["render"]
    assert threads["closing"] and loop_thread not in threads["closing"]
