"""The servers that run the library, each behind one contract (``base.ServerAdapter``).

One module per server: ``gunicorn`` (its workers, ``-k gevent`` among them),
``sse_worker`` (the library's own worker), ``uvicorn_worker`` (gunicorn's
``uvicorn_worker.UvicornWorker``), ``gunicorn_asgi`` (gunicorn's own ASGI
worker), ``uvicorn``, ``daphne``, and ``detect``
(development servers and unknown ones). ``start()`` finds the server once,
from ``AppConfig.ready()``; a process where that found no server serving it
(gunicorn's master with ``--preload``, or a program that set Django up
before it served) looks once more when its first stream opens. The answer
is kept for the process and forgotten in a forked child. ``http1`` is the
request recogniser of the library's worker (``django_sse.worker``).
"""

from __future__ import annotations

import importlib
import os
import weakref
from typing import TYPE_CHECKING, Any

from .base import ServerAdapter

if TYPE_CHECKING:
    import asyncio

# The adapters' modules, the most specific first: the library's worker is a
# gunicorn worker, and gunicorn's uvicorn worker runs a uvicorn server. They
# are imported when ``find()`` first runs: the library's worker imports
# ``servers.http1`` in gunicorn's master, which must import no Django before
# gevent patches the worker (Django's connections would be shared by greenlets).
_ADAPTERS = ("uvicorn_worker", "gunicorn_asgi", "sse_worker", "gunicorn", "uvicorn", "daphne")

_adapter: ServerAdapter | None = None
_looked_again = False
_watched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _forget() -> None:
    global _adapter, _looked_again
    _adapter = None
    _looked_again = False


os.register_at_fork(after_in_child=_forget)


def find() -> ServerAdapter:
    """Return the adapter of the server running (or loading) this process; ``detect.Development`` if none."""
    for name in _ADAPTERS:
        adapter: ServerAdapter | None = importlib.import_module(f"{__name__}.{name}").find()
        if adapter is not None:
            return adapter
    from .detect import Development

    return Development()


def _start(adapter: ServerAdapter) -> ServerAdapter:
    from ..checks import run_startup_checks

    workers = adapter.workers()
    if workers is not None:
        extra = adapter.config_warnings() if adapter.serving else []
        run_startup_checks(workers=workers, extra=extra)
    if adapter.serving:
        adapter.watch()
    return adapter


def start() -> ServerAdapter:
    """Find the server, check the library's settings and start watching for its stop; return its adapter.

    Called once, from ``AppConfig.ready()``. Raises ``ImproperlyConfigured``
    for a wrong setting, which stops the server before it serves.
    """
    global _adapter
    _adapter = adapter = find()
    return _start(adapter)


def current() -> ServerAdapter:
    """Return the adapter of this process; the first call after a start that found none serving looks again."""
    global _adapter, _looked_again
    adapter = _adapter
    if adapter is not None and (adapter.serving or _looked_again):
        return adapter
    _looked_again = True
    _adapter = adapter = find()
    return _start(adapter)


def stream_opening(meta: dict[str, Any], asynchronous: bool) -> None:
    """Tell the server adapter that a stream opens (once per process it costs something).

    Finds the gunicorn worker of a ``--preload``-ed application, whose
    ``AppConfig.ready()`` ran in the master, and warns once about a server
    that blocks a thread per stream (``asynchronous`` False: a WSGI stream).
    Cheap after the first call.
    """
    from . import detect

    adapter = current()
    if not asynchronous and not detect._warned and adapter.blocks_threads(meta):
        detect.warn_blocking_server(meta)


def async_stream_opening() -> None:
    """Tell the server adapter that a stream opens on the running event loop (once per loop it costs something).

    Watches the ASGI server (uvicorn, daphne) so that its stop ends the streams.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    if loop in _watched:
        return
    _watched.add(loop)
    current().watch_loop(loop)


__all__ = ["ServerAdapter", "async_stream_opening", "current", "find", "start", "stream_opening"]
