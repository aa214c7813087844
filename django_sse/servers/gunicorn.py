"""Running inside gunicorn with no hook in the site's config file.

gunicorn installs a worker's signal handlers before it loads the WSGI
application, so once Django is set up in a worker, the handler of
``SIGTERM`` is the bound ``handle_exit`` of the worker object: that is how
the library finds its worker, whatever command line or config file started
it. ``attach()`` then, once per worker process, runs the library's
start-up checks (a wrong setting stops the worker before it serves), warns
once about gunicorn settings that hurt streams, and watches ``worker.alive``
so that TERM, HUP, ``max_requests`` and ``max_requests_jitter`` end every
stream cleanly, with a retry hint, long before ``graceful_timeout``.

``attach()`` is called from ``AppConfig.ready()`` and again, cheaply, when a
stream opens: with ``--preload`` the application is loaded in the master,
before any worker exists, and the first stream of each worker attaches it.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
from typing import Any

from django.core import checks

from ..checks import run_startup_checks
from ..conf import sse_settings
from ..shutdown import end_streams_when_stopping

logger = logging.getLogger(__name__)

_attached = False


def _forget_attachment() -> None:
    global _attached
    _attached = False


os.register_at_fork(after_in_child=_forget_attachment)


def current_worker() -> Any | None:
    """Return the gunicorn worker that runs this process, or None outside gunicorn."""
    if "gunicorn" not in sys.modules:
        return None
    from gunicorn.workers.base import Worker

    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if isinstance(owner, Worker) else None


def _preloading_arbiter() -> Any | None:
    """Return gunicorn's master when it is loading the application (``--preload``), else None.

    The master loads it from ``Arbiter.setup()``, before it installs its
    signal handlers: look for that frame on the stack (once, at start-up).
    """
    if "gunicorn.arbiter" not in sys.modules:
        return None
    from gunicorn.arbiter import Arbiter

    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Arbiter):
            return owner
        frame = frame.f_back
    return None


def attach() -> bool:
    """Check settings and watch for shutdown in this gunicorn worker; once per process.

    Return whether this process is a gunicorn worker. Raises
    ``ImproperlyConfigured`` for a wrong setting, which makes gunicorn stop
    with the message ("Worker failed to boot"). In gunicorn's master (an
    application loaded with ``--preload``) it runs the checks only.
    """
    global _attached
    if _attached:
        return True
    worker = current_worker()
    if worker is None:
        arbiter = _preloading_arbiter()
        if arbiter is not None:  # --preload: fail in the master, before forking
            run_startup_checks(workers=arbiter.cfg.workers)
        return False
    _attached = True
    run_startup_checks(workers=worker.cfg.workers, extra=worker_config_warnings(worker))
    end_streams_when_stopping(worker)
    return True


def worker_config_warnings(worker: Any) -> list[checks.CheckMessage]:
    """Return warnings for the gunicorn settings of ``worker`` that hurt streams."""
    cfg = worker.cfg
    warnings: list[checks.CheckMessage] = []
    worker_class = type(worker)
    name = f"{worker_class.__module__}.{worker_class.__qualname__}"
    is_gevent = any(cls.__module__ == "gunicorn.workers.ggevent" for cls in worker_class.__mro__)
    if not is_gevent:
        warnings.append(
            checks.Warning(
                f"gunicorn runs the worker class {name}: every open stream holds a whole "
                "worker thread or process, and a sync worker is killed after gunicorn's "
                f"timeout ({cfg.timeout} s) however healthy its stream.",
                hint="Run gunicorn with -k gevent (worker_class = 'gevent' in its config file).",
                id="django_sse.W002",
            )
        )
    limit = sse_settings.SSE_MAX_STREAMS
    connections = getattr(worker, "worker_connections", None)
    if is_gevent and connections is not None and (limit is None or connections <= limit):
        allowed = "no limit" if limit is None else f"{limit}"
        wanted = (limit or 20_000) + 1000
        warnings.append(
            checks.Warning(
                f"gunicorn's worker_connections is {connections} and SSE_MAX_STREAMS allows "
                f"{allowed}: once {connections} streams are open, this worker accepts no "
                "connection at all, not even for a page, instead of answering streams 503.",
                hint=(
                    f"Run gunicorn with --worker-connections {wanted} (worker_connections = "
                    f"{wanted} in its config file), or set SSE_MAX_STREAMS below "
                    f"{connections}."
                ),
                id="django_sse.W003",
            )
        )
    return warnings
