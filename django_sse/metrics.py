"""What operators see of this process's streams: Prometheus metrics and log lines.

Metrics need the ``metrics`` extra (``prometheus_client``); log lines are
written with or without it (see ``docs/guides/operations.rst``).

Without ``prometheus_client`` installed, or with ``SSE_METRICS = False``,
nothing is imported and nothing registered; every ``record_*`` function
returns at once. With it, the metrics (all named ``django_sse_*``, see
``docs/guides/operations.rst``) live in prometheus_client's default registry,
so an existing endpoint (django-prometheus) reports them, and
``metrics_view`` serves them too.

The contract with the rest of the package is this module's functions. Per
stream and per publish they update prometheus_client at once. Per write (the
hot path of a fan-out) the stream only adds to plain integers in ``counts``;
``flush()`` moves them into prometheus_client, once a second from a task of
the process, and before every scrape of ``metrics_view``: a counter read
elsewhere is at most about a second behind.

Several processes (gunicorn workers): set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory for the server (prometheus_client's multiprocess mode); any
worker's ``metrics_view`` then reports the whole server. Each worker removes
the live gauges of workers that are gone when it starts and when it exits.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import logging
import os
import time
from typing import Any

from django.http import HttpRequest, HttpResponse

from .conf import sse_settings
from .core.concurrency import Task, new_lock, sleep

logger = logging.getLogger(__name__)

#: Seconds between two moves of the write counters into prometheus_client.
FLUSH_INTERVAL = 1.0
#: Seconds between two samples of the delivery lag in one process (a write at the most).
LAG_SAMPLE_INTERVAL = 0.01
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class WriteCounts:
    """What the streams of this process wrote since the last ``flush()``: plain integers."""

    __slots__ = ("delivered", "bytes_sent", "heartbeats", "replayed", "next_lag_sample")

    def __init__(self) -> None:
        self.delivered = 0
        self.bytes_sent = 0
        self.heartbeats = 0
        self.replayed = 0
        #: time.monotonic() from which the next write may sample the delivery lag.
        self.next_lag_sample = 0.0


counts = WriteCounts()


def installed() -> bool:
    """Whether ``prometheus_client`` can be imported (the ``metrics`` extra), without importing it."""
    try:
        return importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):  # blocked, or a broken entry in sys.modules
        return False


class _Metrics:
    """The prometheus_client objects, made once per process on first use."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        live: dict[str, Any] = {"multiprocess_mode": "livesum"} if multiprocess else {}
        each: dict[str, Any] = {"multiprocess_mode": "liveall"} if multiprocess else {}
        self.streams_open = Gauge("django_sse_streams_open", "Streams open now.", ["view"], **live)
        self.streams_opened = Counter("django_sse_streams_opened", "Streams opened.", ["view"])
        self.streams_ended = Counter(
            "django_sse_streams_ended", "Streams ended, by reason.", ["view", "reason"]
        )
        self.streams_refused = Counter(
            "django_sse_streams_refused",
            "Streams refused, by HTTP status.",
            ["view", "status"],
        )
        self.events_delivered = Counter(
            "django_sse_events_delivered", "Events written to clients (one per client)."
        )
        self.bytes_sent = Counter("django_sse_bytes_sent", "Bytes written to stream clients.")
        self.heartbeats = Counter("django_sse_heartbeats", "Heartbeat comments written.")
        self.replayed_events = Counter(
            "django_sse_replayed_events", "Events replayed from history to resuming clients."
        )
        self.stream_resets = Counter(
            "django_sse_stream_resets", "stream-reset events sent, by cause.", ["cause"]
        )
        self.events_published = Counter(
            "django_sse_events_published", "Events published by send_event in this process."
        )
        self.publish_errors = Counter(
            "django_sse_publish_errors", "send_event calls that failed to reach the broker."
        )
        self.publish_seconds = Histogram(
            "django_sse_publish_seconds", "Time send_event took.", buckets=PUBLISH_BUCKETS
        )
        self.broker_connected = Gauge(
            "django_sse_broker_connected",
            "Whether this process's subscription to the broker is up (1) or not (0).",
            **each,
        )
        self.broker_reconnects = Counter(
            "django_sse_broker_reconnects", "Subscriptions to the broker restored after a loss."
        )
        self.delivery_lag = Histogram(
            "django_sse_delivery_lag_seconds",
            "From an event's id (its publication) to its write to a client, sampled.",
            buckets=LAG_BUCKETS,
        )
        self.pid = os.getpid()


_state: dict[str, Any] = {}
_lock = new_lock()


def _metrics() -> _Metrics | None:
    """Return this process's metrics, or None when metrics are off."""
    if not sse_settings.SSE_METRICS or not _installed():
        return None
    made: _Metrics | None = _state.get("metrics")
    if made is not None and made.pid == os.getpid():
        return made
    with _lock:  # threads (runserver): registering the metrics twice would raise
        made = _state.get("metrics")
        if made is None:
            made = _state["metrics"] = _Metrics()
            if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
                forget_gone_processes()
                atexit.register(forget_this_process)
        elif made.pid == os.getpid():
            return made
        made.pid = os.getpid()  # new, or forked: prometheus_client's values follow the pid
        _state["flusher"] = Task(_flush_every, FLUSH_INTERVAL, name="django-sse-metrics")
    return made


@functools.cache
def _installed() -> bool:
    return installed()


def enabled() -> bool:
    """Whether this process records metrics (the extra installed and ``SSE_METRICS`` on)."""
    return _metrics() is not None


# --- what the package records ----------------------------------------------------------


def record_stream_opened(view: str) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.streams_opened.labels(view).inc()
        metrics.streams_open.labels(view).inc()


def record_stream_ended(view: str, reason: str, channels: list[str], seconds: float) -> None:
    logger.debug(
        "Stream ended: view %s, channels %s, %s after %.1f s.",
        view,
        ",".join(channels) or "-",
        reason,
        seconds,
    )
    metrics = _metrics()
    if metrics is not None:
        metrics.streams_open.labels(view).dec()
        metrics.streams_ended.labels(view, reason).inc()


def record_stream_refused(view: str, status: int) -> None:
    """Count a refusal; 503 and 429 (capacity) are also summed into a WARNING a minute at most."""
    if status in (429, 503):
        refusal_log.add(status)
    else:
        logger.debug("Stream refused: view %s, status %d.", view, status)
    metrics = _metrics()
    if metrics is not None:
        metrics.streams_refused.labels(view, str(status)).inc()


class RefusalLog:
    """Streams refused for capacity, logged as one line per ``interval`` at the most, with counts."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.counts: dict[int, int] = {}
        self.next_line = 0.0

    def add(self, status: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        now = time.monotonic()
        if now < self.next_line:
            return
        self.next_line = now + self.interval
        counts, self.counts = self.counts, {}
        causes = {503: "SSE_MAX_STREAMS (503)", 429: "SSE_MAX_STREAMS_PER_USER (429)"}
        logger.warning(
            "Refused %s stream(s) since the last such line: the limit of %s was reached.",
            sum(counts.values()),
            " and ".join(causes[code] for code in sorted(counts, reverse=True)),
        )


refusal_log = RefusalLog()


def record_stream_reset(causes: list[str]) -> None:
    metrics = _metrics()
    if metrics is not None:
        for cause in causes:
            metrics.stream_resets.labels(cause).inc()


def record_publish(seconds: float, failed: bool) -> None:
    metrics = _metrics()
    if metrics is not None:
        if failed:
            metrics.publish_errors.inc()
        else:
            metrics.events_published.inc()
        metrics.publish_seconds.observe(seconds)


def record_broker_connected(connected: bool, restored: bool = False) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.broker_connected.set(1 if connected else 0)
        if restored:
            metrics.broker_reconnects.inc()


def sample_lag(published_ms: int) -> None:
    """Record the delivery lag of an event published at ``published_ms``, at most once per interval."""
    now = time.monotonic()
    if now < counts.next_lag_sample:
        return
    counts.next_lag_sample = now + LAG_SAMPLE_INTERVAL
    metrics = _metrics()
    if metrics is not None:
        metrics.delivery_lag.observe(max(0.0, time.time() - published_ms / 1000))


def flush() -> None:
    """Move the write counters into prometheus_client; with metrics off, drop them."""
    metrics = _metrics()
    delivered, sent, heartbeats, replayed = (
        counts.delivered,
        counts.bytes_sent,
        counts.heartbeats,
        counts.replayed,
    )
    counts.delivered -= delivered
    counts.bytes_sent -= sent
    counts.heartbeats -= heartbeats
    counts.replayed -= replayed
    if metrics is None:
        return
    for counter, value in (
        (metrics.events_delivered, delivered),
        (metrics.bytes_sent, sent),
        (metrics.heartbeats, heartbeats),
        (metrics.replayed_events, replayed),
    ):
        if value:
            counter.inc(value)


def _flush_every(interval: float) -> None:
    while True:
        sleep(interval)
        try:
            flush()
        except Exception:  # a metrics failure never touches streams
            logger.exception("Could not update django-sse's metrics.")


# --- several processes ---------------------------------------------------------------


def forget_gone_processes() -> int:
    """Remove the live gauges of processes that no longer run (multiprocess mode); return how many.

    prometheus_client keeps one file per process and metric kind in
    ``PROMETHEUS_MULTIPROC_DIR``; a worker that died keeps counting in the
    "live" gauges until its files are removed. Each worker does this when it
    starts, and for itself when it exits (``forget_this_process()``).
    """
    from prometheus_client import multiprocess

    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    gone: set[int] = set()
    for name in os.listdir(directory):
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        digits = name[: -len(".db")].rsplit("_", 1)[-1]
        if digits.isdigit() and not _running(int(digits)):
            gone.add(int(digits))
    for pid in gone:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return len(gone)


def forget_this_process() -> None:
    """At exit (``atexit``): remove this process's live gauges, so the server's open streams stay right."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ or "metrics" not in _state:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid(), os.environ["PROMETHEUS_MULTIPROC_DIR"])  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the endpoint --------------------------------------------------------------------


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve the metrics in Prometheus's text format (every worker's, in multiprocess mode).

    Mount it in a URLconf (``path("metrics/", metrics_view)``) and protect it
    as you would the admin: it tells how busy the site is. Without the
    ``metrics`` extra it answers 404.
    """
    if _metrics() is None:
        return HttpResponse(
            "Metrics are off: install django-sse[metrics] (and keep SSE_METRICS on).\n",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    flush()
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        forget_gone_processes()  # a worker killed since: its streams are not open any more
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
