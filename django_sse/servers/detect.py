"""Which server runs us, and the one warning for servers that block a worker per stream."""

from __future__ import annotations

import logging
from typing import Any

from ..core.concurrency import gevent_patched

logger = logging.getLogger(__name__)

_warned = False


def is_development_server(environ: dict[str, Any]) -> bool:
    if environ.get("SERVER_NAME") == "testserver":  # Django's test client
        return True
    return "WSGIServer" in environ.get("SERVER_SOFTWARE", "") and not gevent_patched()


def warn_if_blocking_server(environ: dict[str, Any]) -> None:
    """Log once per process when each stream would hold a whole worker thread."""
    global _warned
    if _warned or gevent_patched() or is_development_server(environ):
        return
    _warned = True
    logger.warning(
        "django-sse is serving a stream from a process that gevent has not patched "
        "(server %r): every open stream holds a whole worker thread. Run "
        "`gunicorn -k gevent` instead.",
        environ.get("SERVER_SOFTWARE", "unknown"),
    )
