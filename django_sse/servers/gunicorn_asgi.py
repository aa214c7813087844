"""gunicorn's own ASGI worker (``gunicorn -k asgi mysite.asgi``; gunicorn 24 and later).

The worker installs its signal handlers on its event loop, so no bound
method names it; it is found on the stack instead, loading the application
(``load_wsgi``) when ``AppConfig.ready()`` runs. On TERM, HUP or
``max_requests`` it sets ``alive`` false, closes its servers and then waits,
up to ``graceful_timeout``, for every connection to finish, which streams
never do by themselves. So once per event loop the adapter starts a task
that polls ``alive``; once the servers no longer accept, the streams end
with a retry hint and the clients reconnect elsewhere. Its ``workers`` is
gunicorn's. Streams run on the event loop: none of gunicorn's warnings for
sync workers applies.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .base import Adapter, GunicornWorkerAdapter, is_class_named, loading_owner
from .uvicorn import watch_stop

_MODULE, _CLASS = "gunicorn.workers.gasgi", "ASGIWorker"


class GunicornAsgiWorker(GunicornWorkerAdapter, Adapter):
    """A gunicorn worker of class ``asgi``: its stop seen on its event loop."""

    name = "gunicorn asgi worker"

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        worker = self.worker
        watch_stop(loop, lambda: not worker.alive, lambda: _accepting(worker))


def _accepting(worker: Any) -> bool:
    return any(server.is_serving() for server in getattr(worker, "servers", ()))


def find() -> Adapter | None:
    """Return the adapter of the gunicorn ASGI worker loading this process, or None."""
    if _MODULE not in sys.modules:
        return None
    worker = loading_owner(lambda owner: is_class_named(owner, _MODULE, _CLASS))
    return None if worker is None else GunicornAsgiWorker(worker)
