"""The contract between the library and the server that runs it, and the look-ups adapters share.

Light to import: the library's worker imports ``servers.http1`` in gunicorn's
master, before gevent patches, so nothing here imports Django or asyncio
at import time. Each server the library knows has one module under ``django_sse.servers``
with a ``find()`` that returns its adapter when that server runs (or loads)
this process, else None. ``django_sse.servers`` asks them once at start-up
and keeps the answer for the process.
"""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # nothing of Django or asyncio before gevent patches (the worker's master)
    import asyncio

    from django.core import checks


class ServerAdapter(Protocol):
    """What the library needs from a server: who it is, its workers, its warnings, its stop."""

    #: A short name for logs and tests ("gunicorn", "uvicorn", "development", ...).
    name: str
    #: Whether this adapter runs the process's requests. False for gunicorn's master
    #: loading the application for its workers (``--preload``), and for no server
    #: found: the library looks again when the first stream opens.
    serving: bool

    def workers(self) -> int | None:
        """Return how many processes serve the application, or None: no start-up checks here.

        None leaves the library's settings to Django's check framework
        (runserver, the test client, a program that runs a server itself).
        """

    def config_warnings(self) -> list[checks.CheckMessage]:
        """Return warnings about the server's settings that hurt streams (default: none)."""

    def watch(self) -> None:
        """Start ending the streams when the server stops; called once, when found serving.

        Servers that stop through an event loop do nothing here and watch in
        ``watch_loop()``. Tuning that is safe once the application is loaded
        happens here too.
        """

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start ending the streams of ``loop`` when the server stops; once per event loop."""

    def blocks_threads(self, environ: dict[str, Any]) -> bool:
        """Return whether each stream of this WSGI request holds a whole thread of the server."""


def signal_owner(signum: int = signal.SIGTERM) -> object | None:
    """Return the object whose bound method handles ``signum``, or None.

    gunicorn's worker, uvicorn's ``Server`` and Twisted's reactor each install
    a bound method: its ``__self__`` names the server running this process.
    """
    return getattr(signal.getsignal(signum), "__self__", None)


def loading_owner(accept: Callable[[object], bool]) -> object | None:
    """Return the first ``self`` up the call stack that ``accept`` accepts, or None.

    Servers load the application (so ``AppConfig.ready()`` runs) from a
    method of their own object, before they install their signal handlers:
    gunicorn's ``Arbiter`` (``--preload``), uvicorn's ``Config``, daphne's
    ``CommandLineInterface``. Pitfall: it walks every frame; call it at
    start-up only.
    """
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if owner is not None and accept(owner):
            return owner
        frame = frame.f_back
    return None


def is_class_named(owner: object, module: str, name: str) -> bool:
    """Return whether ``owner``'s class, or one of its bases, is ``module.name`` (no import needed)."""
    return any(cls.__module__ == module and cls.__name__ == name for cls in type(owner).__mro__)


async def asleep_through(pauses: Iterator[float]) -> None:
    """Await each pause in turn on the event loop until ``pauses`` is exhausted."""
    import asyncio

    for pause in pauses:
        await asyncio.sleep(pause)


class GunicornWorkerAdapter:
    """Mixin for the adapters of a gunicorn worker (any class): ``worker``, and gunicorn's ``workers``."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def workers(self) -> int | None:
        return int(self.worker.cfg.workers)


class Adapter:
    """Defaults for an adapter: serving, one worker, no warnings, nothing to watch, no blocking."""

    name = "server"
    serving = True

    def workers(self) -> int | None:
        return 1

    def config_warnings(self) -> list[checks.CheckMessage]:
        return []

    def watch(self) -> None:
        """Nothing to start by default (servers that stop through an event loop use ``watch_loop``)."""

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing to watch by default."""

    def blocks_threads(self, environ: dict[str, Any]) -> bool:
        return False
