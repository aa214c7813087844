"""uvicorn (``uvicorn mysite.asgi:application``, ``--workers``, ``--limit-max-requests``).

uvicorn, on SIGTERM or SIGINT (or ``--limit-max-requests``), closes its
listening sockets and then waits, up to ``--timeout-graceful-shutdown``
(forever by default), for every connection to finish; only then does it
send the lifespan shutdown, which is too late for streams that never end by
themselves. So once per event loop the adapter finds the ``uvicorn.Server``
that runs it (its bound ``handle_exit`` is the handler of SIGTERM: uvicorn
installs it in the main thread before it serves) and starts a task that
polls, as uvicorn's own main loop does every 0.1 s, whether it is told to
exit or has stopped serving. Its streams then end with a retry hint and the
server's connections close: the clients reconnect elsewhere and resume from
their ``Last-Event-ID``.

At start-up the application is loaded by uvicorn's ``Config`` (found on the
stack): its ``workers`` is what the start-up checks compare the broker with.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from ..shutdown import stop_pauses
from .base import Adapter, asleep_through, is_class_named, loading_owner, signal_owner

#: Seconds between two looks at the server (uvicorn's own tick).
POLL = 0.1
#: Seconds to wait for the listening sockets to close before the streams end anyway.
ACCEPT_WAIT = 2.0

_tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps weak ones only


def uvicorn_server() -> Any | None:
    """Return the ``uvicorn.Server`` that runs this process, or None (not uvicorn, or not found)."""
    if "uvicorn.server" not in sys.modules:
        return None
    owner = signal_owner()
    return owner if is_class_named(owner, "uvicorn.server", "Server") else None


def keep(task: asyncio.Task[None]) -> None:
    """Hold a strong reference to ``task`` until it is done."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _serving(server: Any) -> bool:
    listeners = getattr(server, "servers", None) or ()
    return not listeners or any(listener.is_serving() for listener in listeners)


def watch_stop(
    loop: asyncio.AbstractEventLoop, stopping: Callable[[], bool], accepting: Callable[[], bool]
) -> None:
    """Start a task on ``loop`` that ends the streams once ``stopping()`` and no longer ``accepting()``."""
    pauses = stop_pauses(stopping, accepting, POLL, ACCEPT_WAIT)
    keep(loop.create_task(asleep_through(pauses), name="django-sse-shutdown"))


def watch_uvicorn(loop: asyncio.AbstractEventLoop) -> None:
    """End the streams of ``loop`` once the ``uvicorn.Server`` running it exits (nothing if none runs)."""
    server = uvicorn_server()
    if server is None:
        return
    watch_stop(loop, lambda: server.should_exit, lambda: _serving(server))


class Uvicorn(Adapter):
    """uvicorn: as many workers as its ``--workers``; a stop seen on each event loop."""

    name = "uvicorn"

    def __init__(self, config: Any) -> None:
        self.config = config

    def workers(self) -> int | None:
        return int(getattr(self.config, "workers", None) or 1)

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        watch_uvicorn(loop)


def find() -> Adapter | None:
    """Return the adapter of the uvicorn server running or loading this process, or None."""
    if "uvicorn.config" not in sys.modules:
        return None
    server = uvicorn_server()
    if server is not None:
        return Uvicorn(server.config)
    config = loading_owner(lambda owner: is_class_named(owner, "uvicorn.config", "Config"))
    return None if config is None else Uvicorn(config)
