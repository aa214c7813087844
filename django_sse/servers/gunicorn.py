"""gunicorn and its workers (``-k gevent``, ``-k sync``, ``-k gthread``), found with no hook in its config file.

gunicorn installs a worker's signal handlers before it loads the WSGI
application, so once Django is set up in a worker, the handler of
``SIGTERM`` is the bound ``handle_exit`` of the worker object: that is how
the library finds its worker, whatever command line or config file started
it. Found serving, the adapter warns about gunicorn settings that hurt
streams, watches ``worker.alive`` so that TERM, HUP, ``max_requests`` and
``max_requests_jitter`` end every stream cleanly, with a retry hint, long
before ``graceful_timeout``, and tunes a gevent worker (``servers.tuning``).

With ``--preload`` the application is loaded in the master (found on the
stack, ``Arbiter.setup()``), before any worker exists: the settings are
checked there, and the first stream of each worker finds its worker.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core import checks

from ..conf import sse_settings
from ..core.concurrency import gevent_patched
from ..shutdown import end_streams_when_stopping
from .base import Adapter, GunicornWorkerAdapter, is_class_named, loading_owner, signal_owner
from .tuning import tune_once_loaded


def current_worker() -> Any | None:
    """Return the gunicorn worker that runs this process, or None outside gunicorn."""
    if "gunicorn" not in sys.modules:
        return None
    from gunicorn.workers.base import Worker

    owner = signal_owner()
    return owner if isinstance(owner, Worker) else None


def is_gevent_worker(worker: Any) -> bool:
    """Return whether ``worker`` is (a subclass of) gunicorn's gevent worker."""
    return any(cls.__module__ == "gunicorn.workers.ggevent" for cls in type(worker).__mro__)


class GunicornWorker(GunicornWorkerAdapter, Adapter):
    """A gunicorn worker: its settings checked, its stop watched, a gevent worker tuned."""

    name = "gunicorn"

    def config_warnings(self) -> list[checks.CheckMessage]:
        return worker_config_warnings(self.worker)

    def watch(self) -> None:
        end_streams_when_stopping(self.worker)
        if is_gevent_worker(self.worker):
            tune_once_loaded(self.worker, tune_gc=sse_settings.SSE_TUNE_GC is not False)

    def blocks_threads(self, environ: dict[str, Any]) -> bool:
        return not gevent_patched()


class PreloadingMaster(Adapter):
    """gunicorn's master loading the application (``--preload``): check settings, serve nothing."""

    name = "gunicorn master"
    serving = False

    def __init__(self, arbiter: Any) -> None:
        self.arbiter = arbiter

    def workers(self) -> int | None:
        return int(self.arbiter.cfg.workers)


def find() -> Adapter | None:
    """Return the adapter of this process's gunicorn worker, or of a preloading master, or None."""
    worker = current_worker()
    if worker is not None:
        return GunicornWorker(worker)
    if "gunicorn.arbiter" not in sys.modules:
        return None
    arbiter = loading_owner(lambda owner: is_class_named(owner, "gunicorn.arbiter", "Arbiter"))
    return None if arbiter is None else PreloadingMaster(arbiter)


def worker_config_warnings(worker: Any) -> list[checks.CheckMessage]:
    """Return warnings for the gunicorn settings of ``worker`` that hurt streams."""
    cfg = worker.cfg
    warnings: list[checks.CheckMessage] = []
    worker_class = type(worker)
    name = f"{worker_class.__module__}.{worker_class.__qualname__}"
    is_gevent = is_gevent_worker(worker)
    if not is_gevent and sse_settings.SSE_GRIP_URL is None:  # GRIP: the proxy holds streams
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
    if is_gevent and "h2" in _http_protocols(cfg):
        warnings.append(
            checks.Warning(
                "gunicorn serves HTTP/2 here (http_protocols includes h2), and its gevent "
                "worker answers the requests of one HTTP/2 connection one after another: a "
                "stream holds its connection, so the other streams and pages a browser sends "
                "on that connection wait until the stream ends.",
                hint=(
                    "Serve this worker over HTTP/1.1 (--http-protocols h1) and let a proxy in "
                    "front speak HTTP/2 to browsers; see the deployment guide, 'HTTP/2'."
                ),
                id="django_sse.W005",
            )
        )
    return warnings


def _http_protocols(cfg: Any) -> list[str]:
    """Return gunicorn's ``http_protocols`` as a list (``["h1"]`` before gunicorn had it)."""
    protocols = getattr(cfg, "http_protocols", None) or ["h1"]
    if isinstance(protocols, str):
        protocols = protocols.split(",")
    return [str(protocol).strip() for protocol in protocols]
