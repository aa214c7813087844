"""The processes of a benchmark run, and what /proc and Redis say about them.

``RedisProcess`` (no persistence), ``RedisClusterProcess`` (3 masters, no
persistence), ``LibraryServer`` (gunicorn, the project's
``gunicorn.conf.py``, one gevent worker, ``benchmarks.project``) and
``LibraryAsgiServer`` (uvicorn, one worker, ``benchmarks.project.asgi``),
``StarletteServer`` (sse-starlette on uvicorn, ``benchmarks.starlette_app``),
``DjangoFloorServer`` (Django's ASGI handler alone, ``benchmarks.project.floor``),
``GripServer`` (GRIP mode: sync gunicorn behind Pushpin) and
``CeilingServer`` (``benchmarks.ceiling``) are the runners of
``tests.support.servers`` (own process group, free 127.0.0.1 port, stopped
by PID) with the benchmark's command lines. ``worker_stats()`` reads the
serving process's resident memory, open fds and CPU time from /proc;
``redis_connections()`` counts the Redis clients (``CLIENT LIST``) whose
address is a socket of that process, over every master; ``redis_nodes()``
splits them per master into subscriber and command connections.
"""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

from tests.support import servers as runners
from tests.support.procfs import children, process_stats, tcp_connections
from tests.support.pushpin import PushpinServer
from tests.support.servers import REPO_TOP, ServerError, free_port
from tests.support.stats import get_stats

__all__ = [
    "SERVERS",
    "CeilingServer",
    "HttpServer",
    "LibraryServer",
    "RedisClusterProcess",
    "RedisProcess",
    "ServerError",
    "free_port",
    "redis_connections",
    "redis_nodes",
    "server_stats",
    "worker_stats",
]

START_TIMEOUT = 30.0


MAXCLIENTS = ("--maxclients", "10000")


class RedisProcess(runners.RedisServer):
    """redis-server without persistence, taking up to 10000 clients."""

    topology = "single"
    start_timeout = START_TIMEOUT

    def __init__(self, log_dir: str | Path | None = None) -> None:
        super().__init__(extra_args=MAXCLIENTS, log_dir=log_dir)

    @property
    def masters(self) -> list[runners.RedisServer]:
        """The servers holding keys: this one."""
        return [self]


class RedisClusterProcess(runners.RedisClusterServers):
    """A 3-master Redis Cluster (no replicas), each node without persistence, up to 10000 clients.

    The servers it serves get ``SSE_REDIS_CLUSTER = True`` and ``url`` (the
    first master) through ``BENCH_REDIS_CLUSTER=1`` and ``BENCH_REDIS_URL``.
    """

    topology = "cluster"

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__(log_dir)
        for node in self.nodes:
            node.extra_args += MAXCLIENTS
            node.start_timeout = START_TIMEOUT


def redis_env(redis: RedisProcess | RedisClusterProcess) -> dict[str, str]:
    """The environment that points ``benchmarks.settings`` and the project at ``redis``."""
    return {
        "BENCH_REDIS_URL": redis.url,
        "BENCH_REDIS_CLUSTER": "1" if redis.topology == "cluster" else "0",
    }


class HttpServer:
    """A server of streams, ready once ``/stats/`` answers; ``worker_pid`` serves the streams.

    A mixin of a runner of ``tests.support.servers``, which gives ``port``.
    """

    kind = "server"
    worker_pid = 0
    #: Whether it streams the publisher's events (every server but ``django-floor``).
    delivers_events = True
    start_timeout = START_TIMEOUT
    port: int

    def ready(self) -> bool:
        try:
            stats = self.stats(timeout=2)
        except (OSError, http.client.HTTPException, ValueError):
            return False
        self.worker_pid = stats["pid"]
        return True

    def stats(self, timeout: float = 60, query: str = "") -> dict:
        """GET /stats/: what the serving process holds (streams, greenlets, fds...)."""
        return get_stats(self.port, timeout=timeout, query=query, close=False)

    #: Opens the load client keeps in flight at once.
    open_pending = 1000

    @property
    def client_port(self) -> int:
        """Where the load client connects (default: the server's own port)."""
        return self.port

    def pids(self) -> list[int]:
        """The processes whose CPU and memory count as the server's (default: the serving worker)."""
        return [self.worker_pid]


class LibraryServer(HttpServer, runners.GunicornServer):
    """django-sse under gunicorn's gevent worker: ``-c gunicorn.conf.py``, one worker."""

    name = kind = "library"
    settings_module = "benchmarks.project.settings"
    no_control_socket = False  # gunicorn.conf.py disables it

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        super().__init__(
            app="benchmarks.project.wsgi:application",
            workers=1,
            config="gunicorn.conf.py",
            # SSE_PYTHONPATH: gunicorn.conf.py adds the example project otherwise.
            env={
                "BENCH_REDIS_URL": redis_url,
                "SSE_PYTHONPATH": str(REPO_TOP),
                "SSE_WORKER_CLASS": "gevent",
            },
            log_dir=log_dir,
        )
        self.redis_url = redis_url


class LibraryWorkerServer(LibraryServer):
    """django-sse under gunicorn with its own worker: ``SSE_WORKER_CLASS=django_sse.worker.GeventWorker``."""

    name = kind = "library-worker"

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        super().__init__(redis_url, log_dir)
        self.env["SSE_WORKER_CLASS"] = "django_sse.worker.GeventWorker"


class LibraryMetricsServer(LibraryWorkerServer):
    """The library's worker with Prometheus metrics on (the ``metrics`` extra, ``SSE_METRICS``)."""

    name = kind = "library-metrics"

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        super().__init__(redis_url, log_dir)
        self.env["BENCH_METRICS"] = "1"


class CeilingServer(HttpServer, runners.Server):
    """The raw gevent server of ``benchmarks.ceiling``."""

    name = kind = "ceiling"

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        super().__init__(log_dir=log_dir)
        self.redis_url = redis_url

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "benchmarks.ceiling",
            "--port", str(self.port),
            "--redis-url", self.redis_url,
        ]  # fmt: skip


class GripServer(HttpServer, runners.GunicornServer):
    """GRIP mode: a plain sync gunicorn (two workers, no config file) behind Pushpin, which holds the streams.

    The figures count Django and Pushpin together: ``pids()`` are gunicorn's
    workers and every process of Pushpin (its runner, condure, zurl, the proxy
    and the handler). The publisher posts to Pushpin's control API
    (``Bench.serving`` tells it where).
    """

    name = kind = "library-grip"
    settings_module = "benchmarks.project.settings"
    # Pushpin 1.36's proxy answers 502 rather than queue when its requests to the
    # backend pile up (a few hundred at once here): the client opens 100 at a time.
    open_pending = 100

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        control_port = free_port()
        self.control_url = f"http://127.0.0.1:{control_port}"
        super().__init__(
            app="benchmarks.project.wsgi:application",
            workers=2,
            worker_class="sync",
            env={"BENCH_REDIS_URL": redis_url, "BENCH_GRIP_URL": self.control_url},
            log_dir=log_dir,
        )
        self.redis_url = redis_url
        self.proxy = PushpinServer(
            routes=f"* 127.0.0.1:{self.port}",
            control_port=control_port,
            ready_path="/events/pushpin-ready/",
            # Room for a burst of 2,000 events to 10,000 streams (Debian's defaults are
            # 2,500/s and 25,000: past them Pushpin drops deliveries).
            message_rate=10_000_000,
            message_hwm=25_000_000,
            log_dir=log_dir,
        )

    @property
    def client_port(self) -> int:
        return self.proxy.port

    def start(self) -> GripServer:
        super().start()
        self.proxy.start()
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        self.proxy.stop()
        return super().stop(timeout)

    def pids(self) -> list[int]:
        proxy = [self.proxy.pid, *_descendants(self.proxy.pid)] if self.proxy.running else []
        return [*self.worker_pids(), *proxy]


def _descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *_descendants(child)]
    return found


#: uvicorn's options for both ASGI kinds (one worker; httptools and uvloop when installed).
UVICORN_ARGS = ("--backlog", "4096", "--timeout-keep-alive", "5")


class _UvicornKind(HttpServer, runners.UvicornServer):
    """An ASGI application ``asgi_app`` under uvicorn, one worker, on the run's Redis."""

    asgi_app = ""

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        super().__init__(
            app=self.asgi_app,
            graceful_timeout=10,
            extra_args=UVICORN_ARGS,
            env={"BENCH_REDIS_URL": redis_url},
            log_dir=log_dir,
        )
        self.redis_url = redis_url


class LibraryAsgiServer(_UvicornKind):
    """django-sse under uvicorn, one worker: ``uvicorn benchmarks.project.asgi:application``."""

    name = kind = "library-asgi"
    settings_module = "benchmarks.project.settings"
    asgi_app = "benchmarks.project.asgi:application"


class DjangoFloorServer(_UvicornKind):
    """Django's ASGI handler alone under uvicorn, one worker: the floor of any Django view.

    ``benchmarks.project.floor``: the project's middleware, an ``async def``
    view that streams its opening and a probe; idle scenario only.
    """

    name = kind = "django-floor"
    settings_module = "benchmarks.project.floor_settings"
    asgi_app = "benchmarks.project.asgi:application"
    #: It sends no tick events: nothing to warm up with, no scenario but idle.
    delivers_events = False


class StarletteServer(_UvicornKind):
    """sse-starlette under uvicorn, one worker: ``uvicorn benchmarks.starlette_app:app``.

    Needs ``benchmarks/requirements.txt`` (sse-starlette).
    """

    name = kind = "sse-starlette"
    asgi_app = "benchmarks.starlette_app:app"


SERVERS = {
    "library": LibraryServer,
    "library-worker": LibraryWorkerServer,
    "library-metrics": LibraryMetricsServer,
    "library-asgi": LibraryAsgiServer,
    "sse-starlette": StarletteServer,
    "django-floor": DjangoFloorServer,
    "library-grip": GripServer,
    "ceiling": CeilingServer,
}


def worker_stats(pid: int) -> dict:
    """Resident memory (bytes), open fds and CPU seconds (user + system) of ``pid``."""
    stats = process_stats(pid)
    return {"rss": stats.rss, "fds": stats.fds, "cpu": stats.cpu_seconds}


def server_stats(server: HttpServer) -> dict:
    """``worker_stats()`` summed over the server's processes (``pids()``)."""
    totals = {"rss": 0, "fds": 0, "cpu": 0.0}
    for pid in server.pids():
        for name, value in worker_stats(pid).items():
            totals[name] += value
    return totals


def _clients_of(pid: int, node: runners.RedisServer) -> list[dict]:
    """The entries of ``node``'s CLIENT LIST that are connections of ``pid``."""
    ports = {connection.local_port for connection in tcp_connections(pid, node.port)}
    with node.client() as client:
        entries = client.client_list()
    return [entry for entry in entries if int(entry["addr"].rsplit(":", 1)[1]) in ports]


def redis_connections(pid: int, redis: RedisProcess | RedisClusterProcess) -> int:
    """Count the connections of ``pid`` in the CLIENT LIST of every master of ``redis``."""
    return sum(len(_clients_of(pid, node)) for node in redis.masters)


def redis_nodes(pid: int, redis: RedisProcess | RedisClusterProcess) -> list[dict]:
    """Per master of ``redis``: ``pid``'s connections there and the channels subscribed there.

    ``subscribers``: connections in pub/sub mode (sharded or not); ``commands``:
    the others; ``channels``: the (shard) channels anyone subscribes on that node.
    """
    found = []
    for node in redis.masters:
        clients = _clients_of(pid, node)
        subscribers = sum(
            1 for c in clients if "P" in c["flags"] or int(c.get("ssub", 0)) or int(c["sub"])
        )
        with node.client() as client:
            channels = len(client.execute_command("PUBSUB CHANNELS"))
            channels += len(client.execute_command("PUBSUB SHARDCHANNELS"))
        found.append(
            {
                "subscribers": subscribers,
                "commands": len(clients) - subscribers,
                "channels": channels,
            }
        )
    return found
