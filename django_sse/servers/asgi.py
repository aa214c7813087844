"""Ending the streams of an ASGI process cleanly when its server stops.

uvicorn, on SIGTERM or SIGINT (or ``--limit-max-requests``), closes its
listening sockets and then waits, up to ``--timeout-graceful-shutdown``
(forever by default), for every connection to finish; only then does it
send the lifespan shutdown, which is too late for streams that never end by
themselves. So once per event loop the first stream looks for the
``uvicorn.Server`` that runs it (its bound ``handle_exit`` is the handler of
SIGTERM: uvicorn installs it in the main thread before it serves) and
starts a task that polls, as uvicorn's own main loop does every 0.1 s,
whether it is told to exit or has stopped serving. Its streams then end
with a retry hint and the server's connections close: the clients
reconnect elsewhere and resume from their ``Last-Event-ID``.

daphne, on TERM, cancels every application at once (its reactor's
"before shutdown" trigger). So under daphne the handler of SIGTERM (the
Twisted reactor's ``sigTerm``) is wrapped once: it first ends every stream
with a retry hint and waits, at most ``DRAIN_WAIT`` seconds, for their
responses to finish, then calls the reactor's handler.

Under ``gunicorn -k uvicorn_worker.UvicornWorker`` the gunicorn worker is
found instead (``servers.gunicorn``), as for gevent workers. A program that
runs a server some other way calls ``django_sse.shutdown.end_streams()``
when it stops.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
import threading
import time
import weakref
from typing import Any

from ..core.runtime import streams
from ..shutdown import end_streams

_watched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps weak ones only

#: Seconds between two looks at the server (uvicorn's own tick).
POLL = 0.1
#: Seconds to wait for the listening sockets to close before the streams end anyway.
ACCEPT_WAIT = 2.0
#: Seconds daphne's TERM waits for the ended streams' responses to finish.
DRAIN_WAIT = 5.0


def uvicorn_server() -> Any | None:
    """Return the ``uvicorn.Server`` that runs this process, or None (not uvicorn, or not found)."""
    if "uvicorn" not in sys.modules:
        return None
    from uvicorn.server import Server

    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if isinstance(owner, Server) else None


def attach() -> bool:
    """Under uvicorn or daphne, run the library's start-up checks as the application loads; return whether it did.

    Called from ``AppConfig.ready()``, which runs while uvicorn's ``Config``
    (or daphne's ``CommandLineInterface``) loads the application (found on
    the stack, as ``servers.gunicorn`` finds a preloading arbiter), before it
    serves. A wrong setting raises ``ImproperlyConfigured``, and the server
    exits with the message; the in-process broker with uvicorn's
    ``--workers`` > 1 logs ``django_sse.W001`` in each worker, as under
    gunicorn. (daphne is one process; ``manage.py runserver`` with daphne
    runs Django's system checks itself.)
    """
    loader = _loading_server()
    if loader is None:
        return False
    from ..checks import run_startup_checks

    run_startup_checks(workers=getattr(loader, "workers", None) or 1)
    return True


def _loading_server() -> Any | None:
    """Return the ``uvicorn.Config`` or daphne ``CommandLineInterface`` loading the application, or None."""
    config_class: type | None = None
    if "uvicorn.config" in sys.modules:
        from uvicorn.config import Config

        config_class = Config
    daphne = "daphne.cli" in sys.modules
    if config_class is None and not daphne:
        return None
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if config_class is not None and isinstance(owner, config_class):
            return owner
        if daphne and _is_daphne_cli(owner):
            return owner
        frame = frame.f_back
    return None


def _is_daphne_cli(owner: object) -> bool:
    kind = type(owner)
    return kind.__module__ == "daphne.cli" and kind.__name__ == "CommandLineInterface"


def watch_server() -> None:
    """Once per event loop: end the streams when the uvicorn server running them stops."""
    loop = asyncio.get_running_loop()
    if loop in _watched:
        return
    _watched.add(loop)
    server = uvicorn_server()
    if server is not None:
        _keep(loop.create_task(_end_streams_on_exit(server), name="django-sse-shutdown"))
        return
    reactor_term = _twisted_term_handler()
    if reactor_term is not None:
        signal.signal(signal.SIGTERM, _DrainFirst(loop, reactor_term))


def _keep(task: asyncio.Task[None]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _twisted_term_handler() -> Any | None:
    """Return the Twisted reactor's SIGTERM handler (daphne), or None; only in the main thread."""
    if "twisted.internet.reactor" not in sys.modules:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # signal.signal() would refuse
    handler = signal.getsignal(signal.SIGTERM)
    owner = getattr(handler, "__self__", None)
    if owner is None or not type(owner).__module__.startswith("twisted."):
        return None
    return handler


class _DrainFirst:
    """A SIGTERM handler that ends the streams and lets them finish before the reactor's own runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, then: Any) -> None:
        self.loop = loop
        self.then = then
        self.called = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.called:  # a second TERM: stop at once
            self.then(signum, frame)
            return
        self.called = True
        self.loop.call_soon_threadsafe(lambda: _keep(self.loop.create_task(self._drain(signum))))

    async def _drain(self, signum: int) -> None:
        end_streams()
        deadline = time.monotonic() + DRAIN_WAIT
        while streams.open_responses() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.then(signum, None)


def _serving(server: Any) -> bool:
    listeners = getattr(server, "servers", None) or ()
    return not listeners or any(listener.is_serving() for listener in listeners)


async def _end_streams_on_exit(server: Any) -> None:
    while not server.should_exit and _serving(server):
        await asyncio.sleep(POLL)
    # So that no client reconnects to this very process: wait for the listeners to close.
    deadline = time.monotonic() + ACCEPT_WAIT
    while _serving(server) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    end_streams()
