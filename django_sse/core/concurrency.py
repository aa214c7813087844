"""The one seam for concurrency: everything in django-sse that waits, wakes, spawns or sleeps.

Nothing else in the package imports gevent or uses ``threading`` to wait;
they call this module. Today it has one implementation with two flavours,
chosen by the process, not by the caller:

* **gevent** (the process is monkey-patched: ``gunicorn -k gevent``, a
  ``gevent.pywsgi`` program). ``Task`` is a greenlet; ``Wakeup``, ``Lock``
  and ``sleep`` are gevent's cooperative versions (``threading`` is patched),
  so waiting switches to other greenlets and never blocks the worker.
  ``watch_readable`` runs its callback in the hub's loop, without a greenlet
  of its own. ``Task.kill()`` raises ``GreenletExit`` where the task waits.
* **threads** (``runserver``, a sync worker, the tests' own process).
  ``Task`` is a daemon thread; waiting blocks that thread only.
  ``watch_readable`` watches nothing (returns None): a vanished client is
  found at the next heartbeat instead. ``Task.kill()`` cannot interrupt a
  thread: the function must notice that its work ended (see the stream loop).

Every object here may be used from any greenlet or thread of the process:
``Wakeup.set()`` from a producer, ``Wakeup.wait()`` from the one consumer.
Objects created before gevent patched the process would be the unpatched
kind: create them at run time (in ``__init__``, on first use), not at import.
The ASGI front adds an asyncio implementation of this same interface:
``AsyncWakeup`` (``set()`` from any thread, ``await wait()`` on the event
loop) and ``AsyncTask`` (an asyncio task with ``kill()``, ``join()`` and
``alive``). The hub, the broker's reader and the heartbeat wheel stay
threads there too (an ASGI server does not patch the process), so a wakeup
set from them reaches the loop through ``call_soon_threadsafe``: once per
batch, not once per stream, when a fan-out wakes many streams at a time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, MutableMapping
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_patched = False


def gevent_patched() -> bool:
    """Return whether gevent has monkey-patched this process (threads are greenlets)."""
    global _patched
    if not _patched:  # patching is never undone: once seen, remember it
        try:
            from gevent import monkey
        except ImportError:
            return False
        _patched = monkey.is_module_patched("threading") and monkey.is_module_patched("socket")
    return _patched


class WakeupSignal(Protocol):
    """A flag one consumer waits on and any producer sets: what both flavours share.

    ``Wakeup`` (blocking ``wait(timeout)``) and ``AsyncWakeup`` (``await
    wait()``) both are one; a producer (the hub, the heartbeat wheel) needs
    nothing more, so it never asks which flavour it wakes.
    """

    def set(self) -> None:
        """Wake the waiter (now or at its next ``wait()``); never blocks."""

    def clear(self) -> None:
        """Lower the flag; the consumer calls it before it looks for work."""

    def is_set(self) -> bool:
        """Return whether the flag is up."""


class Wakeup(WakeupSignal, Protocol):
    """The blocking flavour (``threading.Event`` semantics, gevent's under gevent)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set, or ``timeout`` seconds; return whether it was set."""


class TaskHandle(Protocol):
    """Something running concurrently, in either flavour: ``Task`` (greenlet or thread) or ``AsyncTask``."""

    def kill(self) -> None:
        """Interrupt it where it waits, when the flavour can (see each class)."""

    def join(self, timeout: float | None = None) -> None:
        """Wait until it has ended, at most ``timeout`` seconds (never from its own loop)."""

    @property
    def alive(self) -> bool:
        """Whether it is still running."""


def new_wakeup() -> Wakeup:
    """Return a new ``Wakeup``: the flavour's own event, with no wrapper on the hot path."""
    return threading.Event()


def new_stream_wakeup() -> Wakeup:
    """Return the ``Wakeup`` of one stream's mailbox: one waiter, many producers.

    Under gevent a ``_StreamWakeup`` (about half the CPU of gevent's event
    per wake-up, which a stream pays for every write); elsewhere a
    ``threading.Event``, as ``new_wakeup()``.
    """
    if not gevent_patched():
        return threading.Event()
    if _StreamWakeup.getcurrent is None:
        import gevent
        from gevent.exceptions import InvalidSwitchError

        _StreamWakeup.bind(gevent.getcurrent, gevent.get_hub, gevent.Timeout, InvalidSwitchError)
    return _StreamWakeup()


class _StreamWakeup:
    """A wake-up flag that one greenlet waits on, set from any greenlet of its thread.

    What gevent's ``Event`` does for one waiter, without its list of links:
    ``set()`` schedules one callback in the hub's loop, which switches to
    the waiter if it still waits then (a waiter that left ``wait()``, killed
    or timed out, is not switched to). Pitfall: not for several waiters, nor
    for a producer in another OS thread (every greenlet of a gevent worker
    shares one); ``new_wakeup()`` is.
    """

    __slots__ = ("_flag", "_waiter", "_hub", "_scheduled")

    # gevent's, bound once by new_stream_wakeup() (this module imports no gevent).
    getcurrent: Any = None
    get_hub: Any = None
    timeout_class: Any = None
    invalid_switch: Any = None

    @classmethod
    def bind(cls, getcurrent: Any, get_hub: Any, timeout_class: Any, invalid_switch: Any) -> None:
        cls.getcurrent = staticmethod(getcurrent)
        cls.get_hub = staticmethod(get_hub)
        cls.timeout_class = timeout_class
        cls.invalid_switch = invalid_switch

    def __init__(self) -> None:
        self._flag = False
        self._waiter: Any = None
        self._hub: Any = None
        self._scheduled = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None and not self._scheduled:
            self._scheduled = True
            self._hub.loop.run_callback(self._notify)

    def clear(self) -> None:
        self._flag = False

    def _notify(self) -> None:
        self._scheduled = False
        waiter = self._waiter
        if waiter is not None and self._flag:
            self._waiter = None
            waiter.switch(self)

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        waiter = self.getcurrent()
        hub = self._hub = self.get_hub()
        if waiter is hub:
            raise self.invalid_switch("A stream's wake-up cannot be waited on from the hub.")
        timer = None if timeout is None else self.timeout_class.start_new(timeout)
        self._waiter = waiter
        try:
            result = hub.switch()
            if result is not self:
                raise self.invalid_switch(f"Invalid switch into a stream's wait(): {result!r}")
        except self.timeout_class as exc:
            if exc is not timer:
                raise
        finally:
            if timer is not None:
                timer.close()
            if self._waiter is waiter:
                self._waiter = None
        return self._flag


def new_lock() -> threading.Lock:
    """Return a mutual-exclusion lock; hold it only around work that does not wait."""
    return threading.Lock()


def new_rlock() -> threading.RLock:
    """Return a lock its holder may take again (for callbacks that re-enter)."""
    return threading.RLock()


def one_per_key(
    table: MutableMapping[K, V], key: K, lock: AbstractContextManager[Any], build: Callable[[], V]
) -> V:
    """Return ``table[key]``, built by ``build()`` on first use; one build per key, whatever the threads.

    The common case (built already) takes no lock; ``lock`` guards the build.
    """
    value = table.get(key)
    if value is None:
        with lock:
            value = table.get(key)
            if value is None:
                value = table[key] = build()
    return value


def sleep(seconds: float) -> None:
    """Pause the calling greenlet or thread."""
    time.sleep(seconds)


class Task:
    """A function running concurrently: a greenlet under gevent, else a daemon thread."""

    __slots__ = ("_greenlet", "_thread")

    def __init__(self, func: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        self._greenlet: Any = None
        self._thread: threading.Thread | None = None
        if gevent_patched():
            import gevent

            self._greenlet = gevent.spawn(func, *args)
        else:
            self._thread = threading.Thread(target=func, args=args, name=name, daemon=True)
            self._thread.start()

    def kill(self) -> None:
        """Raise ``GreenletExit`` in a greenlet at its blocking point (threads cannot be)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function has returned, at most ``timeout`` seconds."""
        if self._greenlet is not None:
            self._greenlet.join(timeout)
        elif self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        if self._greenlet is not None:
            return not self._greenlet.dead
        return self._thread is not None and self._thread.is_alive()


def call_later(delay: float, func: Callable[..., Any], *args: Any) -> Task:
    """Call ``func(*args)`` in a new task after ``delay`` seconds."""

    def run() -> None:
        sleep(delay)
        func(*args)

    return Task(run, name="django-sse-later")


class Watch(Protocol):
    """A watcher of one file descriptor; ``stop()`` then ``close()`` release it."""

    def stop(self) -> None: ...

    def close(self) -> None: ...


def watch_readable(fileno: int, callback: Callable[..., None], *args: Any) -> Watch | None:
    """Call ``callback(*args)`` (in gevent's loop) when ``fileno`` turns readable; None without gevent.

    The callback runs once per readiness and must not block; the caller
    stops and closes the returned watch, usually from the callback itself.
    The loop's own watcher is returned, with no wrapper: one per stream.
    """
    if not gevent_patched():
        return None
    import gevent

    watcher = gevent.get_hub().loop.io(fileno, 1)
    watcher.start(callback, *args)
    return watcher


# The asyncio flavour (ASGI) ---------------------------------------------------


class _LoopWaker:
    """Resolves, on its loop, the ``AsyncWakeup`` waiters that other threads set."""

    __slots__ = ("_loop", "_thread", "_pending", "_lock", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._pending: list[AsyncWakeup] = []
        self._lock = threading.Lock()

    def wake(self, wakeup: AsyncWakeup) -> None:
        if threading.get_ident() == self._thread:
            wakeup._resolve()
            return
        with self._lock:
            first = not self._pending
            self._pending.append(wakeup)
        if first:  # one call_soon_threadsafe (one write to the loop's pipe) per batch
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

    def _drain(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for wakeup in pending:
            wakeup._resolve()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaker] = (
    weakref.WeakKeyDictionary()
)
_wakers_lock = threading.Lock()


def _waker_for(loop: asyncio.AbstractEventLoop) -> _LoopWaker:
    return one_per_key(_wakers, loop, _wakers_lock, lambda: _LoopWaker(loop))


class AsyncWakeup:
    """A ``Wakeup`` whose one consumer is a coroutine: ``set()`` from any thread, ``await wait()``.

    It binds to the event loop of its first ``wait()``, so it may be created
    in a thread (Django runs a sync view's code in one under ASGI). ``set()``
    never blocks; a ``set()`` before the first ``wait()`` is not lost.
    """

    __slots__ = ("_flag", "_future", "_waker")

    def __init__(self) -> None:
        self._flag = False
        self._future: asyncio.Future[None] | None = None
        self._waker: _LoopWaker | None = None

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        waker = self._waker
        if waker is not None:
            waker.wake(self)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        """Return once set (at once if it is); cancelling the waiting task interrupts it."""
        if self._flag:
            return
        waker = self._waker
        if waker is None:
            waker = self._waker = _waker_for(asyncio.get_running_loop())
        while not self._flag:  # set() reads _waker after _flag: this check sees either
            future = self._future = waker._loop.create_future()
            try:
                await future
            finally:
                self._future = None

    def _resolve(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)


class AsyncTask:
    """A coroutine running as an asyncio task on the current loop; the ``Task`` of the asyncio flavour."""

    __slots__ = ("_task",)

    def __init__(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        self._task = asyncio.get_running_loop().create_task(coroutine, name=name)

    def kill(self) -> None:
        """Cancel the task: ``CancelledError`` is raised where it awaits (from any thread)."""
        loop = self._task.get_loop()
        try:
            loop.call_soon_threadsafe(self._task.cancel)
        except RuntimeError:
            pass  # the loop is closed, and the task with it

    def join(self, timeout: float | None = None) -> None:
        """From another thread than the loop's: wait until the task is done, at most ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._task.done() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.01)

    @property
    def alive(self) -> bool:
        return not self._task.done()


_executor_source: Callable[[], Executor] | None = None


def use_executor(source: Callable[[], Executor]) -> None:
    """Make ``offload`` and ``offload_soon`` run on ``source()``: ``core.runtime`` calls this once.

    The runtime owns the executor (one per process, made again after a
    fork); this module only calls it, so it imports nothing of the runtime.
    """
    global _executor_source
    _executor_source = source


def _executor() -> Executor:
    source = _executor_source
    if source is None:
        raise RuntimeError(
            "No executor for offload(): import django_sse.core.runtime first "
            "(django_sse's AppConfig.ready() does)."
        )
    return source()


async def offload(func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking ``func(*args)`` on the runtime's executor and return its result.

    The one way off the event loop: user hooks of ASGI streams,
    ``asend_event`` and ``achannel_presence`` all come here, and the threads
    are the runtime's (``runtime.get_executor()``), not the loop's default
    executor nor asgiref's one thread for sync views. Unlike a bare
    ``await``, cancelling the caller does not abandon the call: it is
    awaited to its end first (then ``CancelledError`` is raised), so that
    whatever ``func`` took is known to the caller's ``finally:``. Pitfall:
    that makes a cancelled caller wait as long as ``func`` takes.
    """
    future = asyncio.get_running_loop().run_in_executor(_executor(), func, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def offload_soon(func: Callable[[], Any], what: str, log: logging.Logger) -> None:
    """Run blocking ``func()`` on the runtime's executor and return at once; ``log`` its failure as ``what``.

    For releases nobody waits for (a stream's ``stop()`` once it has ended).
    Without a running loop or executor (the process is stopping), it runs here.
    """
    try:
        future = asyncio.get_running_loop().run_in_executor(_executor(), func)
    except RuntimeError:  # no running loop, or its executor is shut down
        func()
        return

    def log_failure(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("%s failed.", what, exc_info=done.exception())

    future.add_done_callback(log_failure)


#: What ``release_request_thread`` reads of asgiref, none of it public API. tests/test_offload.py
#: asserts that the installed asgiref has each, so an asgiref that changes them fails the suite
#: instead of silently keeping a thread per stream.
ASGIREF_INTERNALS = (
    "SyncToAsync.thread_sensitive_context",
    "SyncToAsync.context_to_thread_executor",
)
#: Read when present: a context given an executor of its caller's (``_executor``, newer
#: asgiref releases than 3.8) keeps it; without the attribute asgiref made the executor.
ASGIREF_OPTIONAL_INTERNALS = ("ThreadSensitiveContext._executor",)


def release_request_thread() -> None:
    """Let go of the thread Django's ASGI handler keeps for the current request's sync code.

    ``ASGIHandler`` serves each request in an asgiref ``ThreadSensitiveContext``,
    whose one-thread executor runs the request's sync middleware and view and
    lives until the request ends: for a stream, a parked thread per client
    for hours. Once the view has returned, nothing sync of this request runs
    until ``response.close()``, for which asgiref starts a new executor (and
    shuts it down when the request ends), so the stream shuts this one down
    now. Only the executor asgiref made itself is shut down (not one a
    caller passed in). asgiref offers no public way to do this: this is the
    one place that reads its internals (``ASGIREF_INTERNALS``); an asgiref
    without them keeps its thread, and the test of those names fails.
    """
    try:
        from asgiref.sync import SyncToAsync

        context = SyncToAsync.thread_sensitive_context.get(None)
        executors = SyncToAsync.context_to_thread_executor
    except (ImportError, AttributeError):
        return
    if context is None or getattr(context, "_executor", None) is not None:
        return
    executor = executors.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)


def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    """Call ``hook(*args)`` from sync code, whether it is a plain function or an ``async def``.

    The library's sync code (a view's checks, a permission recheck) calls
    user hooks that may be coroutine functions, e.g. a ``can_read_channel``
    that awaits ``request.auser()``. Such a hook runs through asgiref's
    ``async_to_sync``: under ASGI, from the request's thread, on the
    server's event loop (its ORM calls then go to threads as Django's
    ``aget_user`` sends them); elsewhere (WSGI, a recheck in an executor
    thread) on a short-lived loop of asgiref's. Pitfall: that costs a thread
    hop per call, so a plain function is cheaper where no ``await`` is needed.

    In a gevent-patched process such a hook raises ``ImproperlyConfigured``:
    every greenlet shares the one OS thread, so once asgiref's loop runs,
    Django takes the greenlets' sync ORM calls for async ones and refuses them.
    """
    if inspect.iscoroutinefunction(hook):
        from asgiref.sync import async_to_sync

        if gevent_patched():
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"{hook.__qualname__}() is a coroutine function, which a gevent worker cannot "
                "run; make it a plain method (request.user works there), or serve under ASGI."
            )

        return async_to_sync(hook)(*args)
    return hook(*args)


#: Both flavours meet the shared protocols: mypy checks these two assignments.
TASK_CLASSES: tuple[type[TaskHandle], ...] = (Task, AsyncTask)
WAKEUP_CLASSES: tuple[type[WakeupSignal], ...] = (threading.Event, _StreamWakeup, AsyncWakeup)
