"""``/stats/``: what a server process holds right now, as the tests and benchmarks read it.

Both projects (``tests/urls.py``, ``benchmarks/project/urls.py``) route
``/stats/`` to ``stats``; the test process and the benchmark driver read it
with ``get_stats``. Django and the library are imported only when the view
runs, so the driver imports this module without settings.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import sys
import threading

from tests.support import introspect

# Counters the test project's views bump (``count()``), so tests see what the server did.
counters = {"iterator_started": 0, "iterator_finally": 0}
_counter_lock = threading.Lock()


def count(name: str) -> None:
    """Add one to ``counters[name]`` (from any thread or greenlet)."""
    with _counter_lock:
        counters[name] += 1


def stats(request):
    """Return, as JSON, the pid and what the process holds: streams, greenlets, fds, the hub.

    Also the collector's totals (taken before this view's own ``gc.collect()``),
    ``counters``, the number of tracked objects; ``?types=N`` adds the N most
    common object types and ``?trace=N`` the N allocation sites that grew most
    (see ``introspect``): the ways to find what a leak is made of.
    """
    from django.http import JsonResponse

    import django_sse
    from django_sse.core import heartbeat
    from django_sse.core.runtime import get_hub, streams
    from django_sse.servers.gunicorn import current_worker

    collector = introspect.totals()  # before this view's own collection
    gc.collect()
    top = int(request.GET.get("trace", "0"))
    trace = {"trace": introspect.trace_growth(top)} if top else {}
    greenlets, stacks = introspect.greenlets()
    hub = get_hub()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "streams": len(streams),
            "open_responses": streams.open_responses(),
            "wheel_entries": sum(len(wheel) for wheel in list(heartbeat._wheels.values())),
            "greenlets": greenlets,
            "greenlet_stack_bytes": stacks,
            "threads": threading.active_count(),
            "fds": len(os.listdir("/proc/self/fd")),
            "hub_channels": len(hub.channel_names()),
            "hub_listeners": hub.listener_count(),
            # Catch-up reads sent to the broker, and those served from a shared read.
            "history_reads": hub.reads.broker_reads,
            "history_reads_shared": hub.reads.shared,
            # The bytes of the largest of them (None: a library that does not say).
            "history_read_bytes_max": getattr(hub.reads, "largest_read", None),
            "django_sse_file": django_sse.__file__,
            "worker_class": _worker_class(),
            "short_path_requests": getattr(current_worker(), "short_path_requests", None),
            # The interpreter's tuning (django_sse.servers.tuning): frozen objects,
            # the collector's thresholds, gevent's greenlet tree tracking (None: no gevent).
            "gc_freeze_count": gc.get_freeze_count(),
            "gc_threshold": list(gc.get_threshold()),
            "greenlet_tree_tracked": _greenlet_tree_tracked(),
            **counters,
            **collector,
            **introspect.object_types(int(request.GET.get("types", "0"))),
            **trace,
        }
    )


def _greenlet_tree_tracked() -> bool | None:
    """Return gevent's ``track_greenlet_tree`` option, or None if gevent is not imported."""
    gevent = sys.modules.get("gevent")
    return None if gevent is None else bool(gevent.config.track_greenlet_tree)


def _worker_class() -> str | None:
    """Return the dotted name of the gunicorn worker class serving this process, if any."""
    from django_sse.servers.gunicorn import current_worker

    worker = current_worker()
    if worker is None:
        return None
    if type(worker).__module__ == "gunicorn.workers.ggevent":
        return "gevent"
    return f"{type(worker).__module__}.{type(worker).__qualname__}"


def get_stats(port: int, timeout: float = 10, query: str = "", close: bool = True) -> dict:
    """Return the ``/stats/`` of the server on ``port`` (of whichever worker answers).

    ``close`` sends ``Connection: close``, so the server closes its end
    first; ``query`` is appended after ``?``. Raise ValueError if the answer
    is not a 200.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "GET",
            "/stats/" + (f"?{query}" if query else ""),
            headers={"Connection": "close"} if close else {},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"/stats/ answered {response.status}: {body[:500]!r}")
    return json.loads(body)
