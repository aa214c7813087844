"""The one way off the event loop (``core.concurrency.offload``) and asgiref's internals it relies on."""

from __future__ import annotations

import asyncio
import logging
import threading

import asgiref.sync
import pytest

import django_sse
from django_sse import presence
from django_sse.core import concurrency, runtime
from django_sse.testing import memory_broker


def test_the_asgiref_internals_release_request_thread_reads_exist():
    """Every name in ASGIREF_INTERNALS is in the installed asgiref: fails, never skips, when it changes."""
    for dotted in concurrency.ASGIREF_INTERNALS:
        owner_name, attribute = dotted.split(".")
        owner = getattr(asgiref.sync, owner_name)
        if attribute.startswith("_"):  # an instance attribute, set in __init__
            owner = owner()
        assert hasattr(owner, attribute), f"asgiref {asgiref.__version__} has no {dotted}"
    context_var = asgiref.sync.SyncToAsync.thread_sensitive_context
    assert hasattr(context_var, "get") and hasattr(context_var, "set")
    assert hasattr(asgiref.sync.SyncToAsync.context_to_thread_executor, "pop")


def test_release_request_thread_shuts_down_the_request_executor():
    """Inside a ThreadSensitiveContext, the executor asgiref made for it is shut down and forgotten."""

    async def main() -> bool:
        async with asgiref.sync.ThreadSensitiveContext():
            await asgiref.sync.sync_to_async(lambda: None)()  # asgiref makes the executor
            context = asgiref.sync.SyncToAsync.thread_sensitive_context.get()
            executors = asgiref.sync.SyncToAsync.context_to_thread_executor
            executor = executors[context]
            concurrency.release_request_thread()
            return context not in executors and executor._shutdown

    assert asyncio.run(main())


def _thread_name() -> str:
    return threading.current_thread().name


def test_offload_and_offload_soon_run_on_the_runtime_executor():
    """Both run on the runtime's own threads, not the loop's default executor."""
    done = threading.Event()
    names: list[str] = []

    def record() -> None:
        names.append(_thread_name())
        done.set()

    async def main() -> str:
        concurrency.offload_soon(record, "Recording", logging.getLogger("tests"))
        return str(await concurrency.offload(_thread_name))

    name = asyncio.run(main())
    assert done.wait(5)
    assert name.startswith("django-sse") and names[0].startswith("django-sse")
    assert runtime.get_executor() is runtime.get_executor()


def test_asend_event_and_achannel_presence_use_offload(monkeypatch):
    """Publishing and reading presence from async code run on the runtime's executor."""
    seen: list[str] = []
    channel_presence = presence.channel_presence

    def recording_presence(channel: str) -> presence.Presence:
        seen.append(_thread_name())
        return channel_presence(channel)

    monkeypatch.setattr(presence, "channel_presence", recording_presence)
    with memory_broker():

        async def main() -> tuple[str | None, presence.Presence]:
            event_id = await django_sse.asend_event("n", "x", "offloaded")
            return event_id, await presence.achannel_presence("offloaded")

        event_id, counted = asyncio.run(main())

    assert event_id is not None and counted.streams == 0
    assert len(seen) == 1 and seen[0].startswith("django-sse")


def test_a_cancelled_offload_waits_for_the_call_to_end():
    """Cancelling the caller raises CancelledError only once the blocking call has returned."""
    ended = threading.Event()
    release = threading.Event()

    def blocking() -> None:
        release.wait(5)
        ended.set()

    async def main() -> None:
        task = asyncio.ensure_future(concurrency.offload(blocking))
        await asyncio.sleep(0.05)
        task.cancel()
        asyncio.get_running_loop().call_later(0.1, release.set)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended.is_set()

    asyncio.run(main())
