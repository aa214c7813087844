"""gunicorn's uvicorn worker (``gunicorn -k uvicorn_worker.UvicornWorker mysite.asgi``).

The worker resets gunicorn's handlers of TERM and INT (uvicorn's ``Server``
installs its own as it serves) and keeps ``SIGUSR1``: the owner of that
handler is the worker. Its ``workers`` is gunicorn's; a stop (TERM, HUP,
``max_requests``, which the worker hands to uvicorn as
``limit_max_requests``) reaches the streams through uvicorn's ``Server``,
as under uvicorn itself (``servers.uvicorn``). Streams run on the event
loop: none of gunicorn's warnings for sync workers applies.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from .base import Adapter, GunicornWorkerAdapter, signal_owner
from .uvicorn import watch_uvicorn


class GunicornUvicornWorker(GunicornWorkerAdapter, Adapter):
    """A gunicorn worker of class ``uvicorn_worker.UvicornWorker``."""

    name = "gunicorn uvicorn worker"

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        watch_uvicorn(loop)


def find() -> Adapter | None:
    """Return the adapter of the ``UvicornWorker`` running this process, or None."""
    module = sys.modules.get("uvicorn_worker")
    if module is None:
        return None
    owner = signal_owner(signal.SIGUSR1)
    return GunicornUvicornWorker(owner) if isinstance(owner, module.UvicornWorker) else None
