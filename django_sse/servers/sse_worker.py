"""The library's own gunicorn worker (``gunicorn -k django_sse.worker.GeventWorker``).

It *is* gunicorn's gevent worker with a shorter path for plain requests
(``django_sse.worker``, ``servers.http1``): found, checked, watched and
tuned as every gunicorn gevent worker is (``servers.gunicorn``).
"""

from __future__ import annotations

import sys

from .base import Adapter
from .gunicorn import GunicornWorker, current_worker


class SseWorker(GunicornWorker):
    """A gunicorn worker of class ``django_sse.worker.GeventWorker``."""

    name = "django-sse worker"


def find() -> Adapter | None:
    """Return the adapter of the library's worker running this process, or None."""
    module = sys.modules.get("django_sse.worker")
    if module is None:
        return None
    worker = current_worker()
    return SseWorker(worker) if isinstance(worker, module.GeventWorker) else None
