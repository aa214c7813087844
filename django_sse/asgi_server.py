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

Under ``gunicorn -k uvicorn_worker.UvicornWorker`` the gunicorn worker is
found instead (``gunicorn_worker``), as for gevent workers. A program that
runs a server some other way calls ``django_sse.shutdown.end_streams()``
when it stops.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import weakref
from typing import Any

from .shutdown import end_streams

_watched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps weak ones only

#: Seconds between two looks at the server (uvicorn's own tick).
POLL = 0.1
#: Seconds to wait for the listening sockets to close before the streams end anyway.
ACCEPT_WAIT = 2.0


def uvicorn_server() -> Any | None:
    """Return the ``uvicorn.Server`` that runs this process, or None (not uvicorn, or not found)."""
    if "uvicorn" not in sys.modules:
        return None
    from uvicorn.server import Server

    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if isinstance(owner, Server) else None


def watch_server() -> None:
    """Once per event loop: end the streams when the uvicorn server running them stops."""
    loop = asyncio.get_running_loop()
    if loop in _watched:
        return
    _watched.add(loop)
    server = uvicorn_server()
    if server is None:
        return
    task = loop.create_task(_end_streams_on_exit(server), name="django-sse-shutdown")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


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
