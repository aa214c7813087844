"""What the library knows of the servers that run it: gunicorn and its workers, uvicorn, daphne, runserver.

``gunicorn`` finds the worker of this process and ends its streams when it
stops; ``asgi`` does the same for uvicorn and daphne; ``detect`` warns about
servers that block a thread per stream; ``http1`` is the request recogniser
of the library's own worker (``django_sse.worker``).
"""

from __future__ import annotations

from typing import Any

from .asgi import watch_server
from .detect import warn_if_blocking_server
from .gunicorn import attach


def stream_opening(meta: dict[str, Any], asynchronous: bool) -> None:
    """Tell the server adapters that a stream opens (once per process it costs something).

    Attaches to the gunicorn worker of a ``--preload``-ed application, whose
    ``AppConfig.ready()`` ran in the master, and warns once about a server
    that blocks a thread per stream (``asynchronous`` False: a WSGI stream).
    Cheap after the first call.
    """
    attach()
    if not asynchronous:
        warn_if_blocking_server(meta)


def async_stream_opening() -> None:
    """Tell the server adapters that a stream opens on the running event loop (once per loop it costs something).

    Watches the ASGI server (uvicorn, daphne) so that its stop ends the streams.
    """
    watch_server()
