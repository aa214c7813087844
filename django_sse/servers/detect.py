"""Development servers and servers the library does not know, and the warning for blocking ones.

runserver, ``gevent.pywsgi`` run by a program, the test client: nothing to
watch (a program that runs a server itself calls
``django_sse.shutdown.stop_gracefully()`` or ``end_streams()``), no
start-up checks (Django's check framework runs them under runserver). A
server that is neither gevent-patched nor a development server holds a
whole thread per stream: the first WSGI stream logs that once.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.concurrency import gevent_patched
from .base import Adapter

logger = logging.getLogger(__name__)

_warned = False


def is_development_server(environ: dict[str, Any]) -> bool:
    """Return whether ``environ`` comes from Django's test client or an unpatched ``wsgiref`` server."""
    if environ.get("SERVER_NAME") == "testserver":  # Django's test client
        return True
    return "WSGIServer" in environ.get("SERVER_SOFTWARE", "") and not gevent_patched()


class Development(Adapter):
    """No server found: a development server, the test client, or a server run by a program."""

    name = "development"
    serving = False  # look again when the first stream opens

    def workers(self) -> int | None:
        return None

    def blocks_threads(self, environ: dict[str, Any]) -> bool:
        return not gevent_patched() and not is_development_server(environ)


def warn_blocking_server(environ: dict[str, Any]) -> None:
    """Log once per process that each stream holds a whole worker thread of this server."""
    global _warned
    if _warned:
        return
    _warned = True
    logger.warning(
        "django-sse is serving a stream from a process that gevent has not patched "
        "(server %r): every open stream holds a whole worker thread. Run "
        "`gunicorn -k gevent` instead.",
        environ.get("SERVER_SOFTWARE", "unknown"),
    )
