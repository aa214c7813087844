"""Real servers: redis-server, gunicorn, pywsgi, runserver, uvicorn and daphne, for the tests and the benchmarks.

Each runs as a subprocess in its own process group on a free 127.0.0.1 port.
``start()`` returns once the server answers (or raises ``ServerError`` with the
tail of its output); ``stop()`` ends the whole group by PID: SIGTERM, a bounded
wait, then SIGKILL. Output (stdout and stderr together) goes to a log file that
``stderr_text()`` reads, so it survives restarts and never fills a pipe.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.procfs import children

REPO_TOP = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
PROBE_PATH = "/__servers_probe__"


#: What the servers log when a graceful shutdown ran out of time and cut work off.
FORCED_STOP_LINES = (
    "Worker graceful timeout",  # gunicorn's gevent worker: its graceful_timeout is spent
    "WORKER TIMEOUT",  # gunicorn's master: a worker silent for --timeout, killed
    "SIGKILL",  # gunicorn's master reaping a killed worker (graceful_timeout spent at stop)
    "timeout graceful shutdown exceeded",  # uvicorn: --timeout-graceful-shutdown is spent
)


class ServerError(RuntimeError):
    """A server died, or did not come up in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _http_answers(port: int, tls_ca: str | None = None) -> bool:
    """Return whether a GET gets an HTTP status line back (any status); over TLS given ``tls_ca``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            sock = raw
            if tls_ca is not None:
                context = ssl.create_default_context(cafile=tls_ca)
                sock = context.wrap_socket(raw, server_hostname="localhost")
            sock.sendall(
                f"GET {PROBE_PATH} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False


def _pongs(port: int) -> bool:
    """Return whether the Redis (or Sentinel) on ``port`` answers PING (PONG, or NOAUTH: it serves)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class Server:
    """A server subprocess; subclasses give ``command()`` and may refine ``ready()``."""

    name = "server"
    start_timeout = START_TIMEOUT  # seconds ``start()`` waits for ``ready()``

    def __init__(self, env: dict[str, str] | None = None, log_dir: str | Path | None = None):
        self.port = free_port()
        self.env = dict(env or {})
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="django-sse-"))
        self.log_path = self.log_dir / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must implement command().")

    def ready(self) -> bool:
        """Return whether the server serves; the default is that its port accepts."""
        return _accepts(self.port)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} on port {self.port} is not running.")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Server:
        if self.running:
            raise ServerError(f"{self.name} on port {self.port} is already running.")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO_TOP,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for stop()
            )
        deadline = time.monotonic() + self.start_timeout
        while not self.ready():
            if self.process.poll() is not None:
                code = self.process.returncode
                self.kill()  # whatever it left in its group
                raise ServerError(f"{self.name} exited with {code} on start:\n{self.stderr_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"{self.name} did not serve on port {self.port} within "
                    f"{self.start_timeout:.0f} s:\n{self.stderr_text()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, wait ``timeout`` s, then SIGKILL it; return the exit code."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        self._signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(process, signal.SIGKILL)
            process.wait(5)
        # Children (gunicorn workers) outlive a killed master: end them too.
        self._signal_group(process, signal.SIGKILL)
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL the process group at once, as a crash would; return the exit code."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        self._signal_group(process, signal.SIGKILL)
        return process.wait(5)

    def restart(self) -> Server:
        """Stop and start again on the same port (and, for Redis, the same directory)."""
        self.stop()
        return self.start()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the main process only."""
        os.kill(self.pid, signum)

    def forced_stops(self) -> list[str]:
        """Return the log's lines that show a graceful shutdown cut short (``FORCED_STOP_LINES``).

        The oracle of "stopped gracefully": a server that waited out its
        graceful timeout says so in its log, however fast or slow the machine.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if any(m in line for m in FORCED_STOP_LINES)]

    def stderr_text(self, tail: int = 8000) -> str:
        """Return the last ``tail`` characters the server wrote to stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-tail:]

    @staticmethod
    def _signal_group(process: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.process.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} 127.0.0.1:{self.port} {state}>"


class RedisServer(Server):
    """redis-server without RDB snapshots; ``appendonly=True`` fsyncs every write.

    ``extra_args`` are appended to the command line (e.g. ``--maxclients``).
    """

    name = "redis"

    def __init__(
        self,
        appendonly: bool = False,
        directory: str | Path | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.appendonly = appendonly
        self.directory = Path(directory or self.log_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not on PATH; run scripts/install-system-deps.")
        command = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            command += ["--appendfsync", "always"]
        return command + self.extra_args

    def ready(self) -> bool:
        """Return whether PING answers PONG (not LOADING, as while reading the AOF)."""
        return _pongs(self.port)

    def client(self, **kwargs):
        """Return a ``redis.Redis`` connected to this server."""
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def replicas_acknowledge(self, count: int, password: str | None = None) -> bool:
        """Return whether ``count`` replicas acknowledge a write (of a probe key) within 0.5 s.

        "online" in INFO is not enough: after a diskless sync, Redis streams
        writes to a replica only once it has sent its first ACK (up to 1 s).
        """
        with self.client(password=password) as admin:
            admin.set("__servers_probe__", "1")
            return int(admin.execute_command("WAIT", count, 500)) >= count


class SentinelServer(Server):
    """redis-server --sentinel monitoring ``service`` at ``master_port`` (quorum ``quorum``).

    The config file is written in ``log_dir`` on start (Sentinel rewrites it
    as it learns the other sentinels and replicas). ``down_after`` and
    ``failover_timeout`` are in ms, small so that a failover takes seconds;
    ``auth_pass`` is the password of the master and replicas, ``requirepass``
    the sentinel's own; ``extra_config`` lines are added (e.g. TLS).
    """

    name = "sentinel"

    def __init__(
        self,
        master_port: int,
        service: str = "mymaster",
        quorum: int = 2,
        down_after: int = 1000,
        failover_timeout: int = 3000,
        auth_pass: str | None = None,
        requirepass: str | None = None,
        extra_config: tuple[str, ...] | list[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.master_port = master_port
        self.service = service
        self.quorum = quorum
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.auth_pass = auth_pass
        self.requirepass = requirepass
        self.extra_config = list(extra_config)
        self.config_path = self.log_dir / f"sentinel-{self.port}.conf"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not on PATH; run scripts/install-system-deps.")
        if not self.config_path.exists():  # on a restart, the config as Sentinel rewrote it
            service = self.service
            lines = [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.log_dir}",
                f"sentinel monitor {service} 127.0.0.1 {self.master_port} {self.quorum}",
                f"sentinel down-after-milliseconds {service} {self.down_after}",
                f"sentinel failover-timeout {service} {self.failover_timeout}",
                f"sentinel parallel-syncs {service} 5",
            ]
            if self.auth_pass:
                lines.append(f"sentinel auth-pass {service} {self.auth_pass}")
            if self.requirepass:  # the sentinels' own password; they use it with each other too
                lines.append(f"requirepass {self.requirepass}")
            self.config_path.write_text("\n".join(lines + self.extra_config) + "\n")
        return [binary, str(self.config_path), "--sentinel"]

    def ready(self) -> bool:
        return _pongs(self.port)

    def client(self, **kwargs):
        """Return a ``redis.Redis`` connected to this sentinel (with its password)."""
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, **{"password": self.requirepass, **kwargs}
        )


def project_env(
    redis_url: str | None = None,
    heartbeat: str | float | None = None,
    settings: dict | None = None,
    **env: str,
) -> dict[str, str]:
    """Return the environment that configures the test project (``tests/settings.py``).

    ``redis_url`` is its ``SSE_REDIS_URL`` ("" for the memory broker even if
    the test process has one set); ``heartbeat`` its ``SSE_HEARTBEAT_INTERVAL``;
    ``settings`` any other settings (sent as JSON); ``env`` is added as is.
    """
    project = {}
    if redis_url is not None:
        project["DJANGO_SSE_TEST_REDIS_URL"] = redis_url
    if heartbeat is not None:
        project["DJANGO_SSE_TEST_HEARTBEAT"] = str(heartbeat)
    if settings:
        project["DJANGO_SSE_TEST_SETTINGS"] = json.dumps(settings)
    return {**project, **env}


class HttpServer(Server):
    """A server of a Django project (``settings_module``), ready once it answers HTTP."""

    settings_module = "tests.settings"

    def __init__(self, env: dict[str, str] | None = None, **kwargs):
        super().__init__(
            env={"DJANGO_SETTINGS_MODULE": self.settings_module, **(env or {})}, **kwargs
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return _http_answers(self.port)


#: The gunicorn worker class of the servers tests start with no config file.
TEST_WORKER_CLASS = os.environ.get("SSE_TEST_WORKER_CLASS") or "gevent"


class GunicornServer(HttpServer):
    """gunicorn's gevent worker as users run it: ``gunicorn -k gevent -c /dev/null APP``.

    ``worker_class`` replaces ``gevent`` (default: ``$SSE_TEST_WORKER_CLASS``,
    which the test matrix sets to run a combination under the library's own
    ``django_sse.worker.GeventWorker``). ``config`` names a config file instead (e.g. the project's optional
    ``gunicorn.conf.py``, or a site's own); ``extra_args`` are appended.
    ``no_control_socket`` adds ``--no-control-socket`` where gunicorn has
    one (>= 25.1 opens one per user, ~/.gunicorn/gunicorn.ctl, which parallel
    servers would take from each other); turn it off for a config file that
    disables it itself, to run exactly its command line.
    """

    name = "gunicorn"
    no_control_socket = True

    def __init__(
        self,
        app: str = "tests.wsgi:application",
        workers: int = 1,
        extra_args: tuple[str, ...] | list[str] = (),
        config: str | Path = os.devnull,
        worker_class: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.worker_class = worker_class or TEST_WORKER_CLASS
        self.app = app
        self.workers = workers
        self.extra_args = list(extra_args)
        self.config = str(config)

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", self.config,
            self.app,
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
        ]  # fmt: skip
        if self.config == os.devnull:
            command += ["--worker-class", self.worker_class]
        if self.no_control_socket and _gunicorn_has_control_socket():
            command.append("--no-control-socket")
        return command + self.extra_args

    def ready(self) -> bool:
        """Return whether all workers are forked and one of them answers HTTP."""
        return len(self.worker_pids()) >= self.workers and super().ready()

    def worker_pids(self) -> list[int]:
        """Return the PIDs of the master's children, its workers."""
        return children(self.pid) if self.running else []

    def killed_workers(self, pids: list[int]) -> list[int]:
        """Return those of ``pids`` (workers that are gone) that did not end by themselves.

        A worker that ends its own run logs "Worker exiting (pid: N)" (uvicorn's
        worker instead re-raises the TERM it handled once it has shut down, and
        the master logs "Worker (pid:N) was sent SIGTERM!"); one the master
        SIGKILLs once ``graceful_timeout`` is spent does neither (and the master
        need not log the kill).
        """
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [
            pid
            for pid in pids
            if f"Worker exiting (pid: {pid})" not in text
            and f"Worker (pid:{pid}) was sent SIGTERM!" not in text
        ]

    def hup(self) -> None:
        """Ask the master to reload: new workers start, old ones stop gracefully."""
        self.send_signal(signal.SIGHUP)

    def term(self) -> None:
        """Ask the master for a graceful shutdown (the master alone, as systemd would)."""
        self.send_signal(signal.SIGTERM)


class Http2GunicornServer(GunicornServer):
    """gunicorn serving HTTP/2 and HTTP/1.1 over TLS: ``--http-protocols h2,h1`` and a test certificate.

    ``certificates`` are ``tests.support.tls.make_certificates``'s; clients
    trust ``ca`` (its path).
    """

    name = "gunicorn-h2"

    def __init__(self, certificates: dict[str, str], extra_args=(), **kwargs):
        tls = [
            "--http-protocols", "h2,h1",
            "--certfile", certificates["server.crt"],
            "--keyfile", certificates["server.key"],
        ]  # fmt: skip
        super().__init__(extra_args=[*tls, *extra_args], **kwargs)
        self.ca = certificates["ca.crt"]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return len(self.worker_pids()) >= self.workers and _http_answers(self.port, self.ca)


class Http2AsgiServer(HttpServer):
    """The test project's ASGI application on ``hypercorn`` or ``granian``, HTTP/2 and HTTP/1.1 over TLS.

    ``certificates`` are ``tests.support.tls.make_certificates``'s; clients
    trust ``ca`` (its path).
    """

    KINDS = ("hypercorn", "granian")

    def __init__(self, kind: str, certificates: dict[str, str], **kwargs):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, not {kind!r}")
        self.name = kind
        self.certificates = certificates
        self.ca = certificates["ca.crt"]
        super().__init__(**kwargs)

    def command(self) -> list[str]:
        cert, key = self.certificates["server.crt"], self.certificates["server.key"]
        app = "tests.asgi:application"
        if self.name == "hypercorn":
            return [
                sys.executable, "-m", "hypercorn", "--certfile", cert, "--keyfile", key,
                "--bind", f"127.0.0.1:{self.port}", app,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", "--http", "auto",
            "--ssl-certificate", cert, "--ssl-keyfile", key,
            "--host", "127.0.0.1", "--port", str(self.port), app,
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return _http_answers(self.port, self.ca)


class PywsgiServer(HttpServer):
    """The test project on gevent's pywsgi.WSGIServer (tests/pywsgi_main.py)."""

    name = "pywsgi"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.pywsgi_main", str(self.port)]


class RunserverServer(HttpServer):
    """The test project on Django's threaded development server."""

    name = "runserver"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{self.port}"]


class UvicornServer(HttpServer):
    """The test project under uvicorn, as users run it: ``uvicorn tests.asgi:application``.

    ``workers`` > 1 runs uvicorn's own process manager (``--workers``);
    ``graceful_timeout`` is ``--timeout-graceful-shutdown``; ``extra_args``
    are appended.
    """

    name = "uvicorn"

    def __init__(
        self,
        app: str = "tests.asgi:application",
        workers: int = 1,
        graceful_timeout: float | None = 20,
        extra_args: tuple[str, ...] | list[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.app = app
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.extra_args = list(extra_args)

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--no-access-log",
        ]  # fmt: skip
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        if self.graceful_timeout is not None:
            command += ["--timeout-graceful-shutdown", str(self.graceful_timeout)]
        return command + self.extra_args

    def ready(self) -> bool:
        return len(self.worker_pids()) >= self.workers and super().ready()

    def worker_pids(self) -> list[int]:
        """Return the PIDs of the processes that serve: the one process, or ``--workers`` children."""
        if not self.running:
            return []
        if self.workers == 1:
            return [self.pid]
        return [pid for pid in children(self.pid) if _is_uvicorn_worker(pid)]

    def term(self) -> None:
        """Ask uvicorn for a graceful shutdown (the main process alone, as systemd would)."""
        self.send_signal(signal.SIGTERM)


def _is_uvicorn_worker(pid: int) -> bool:
    """Whether ``pid`` is a worker of uvicorn's manager, not its multiprocessing helper."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


class DaphneServer(HttpServer):
    """The test project under daphne: ``daphne tests.asgi:application``."""

    name = "daphne"

    def __init__(self, app: str = "tests.asgi:application", **kwargs):
        super().__init__(**kwargs)
        self.app = app

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "daphne",
            "--bind", "127.0.0.1", "--port", str(self.port),
            self.app,
        ]  # fmt: skip

    def worker_pids(self) -> list[int]:
        """Return the PID of the one process that serves."""
        return [self.pid] if self.running else []

    def term(self) -> None:
        """Ask daphne to stop (it ends django-sse's streams first: ``django_sse.servers.daphne``)."""
        self.send_signal(signal.SIGTERM)


def _gunicorn_has_control_socket() -> bool:
    import gunicorn.config

    return hasattr(gunicorn.config, "ControlSocketDisable")


#: The slot ranges of a 3-master cluster, as ``redis-cli --cluster create`` splits them.
CLUSTER_SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


class RedisClusterServers:
    """A 3-master Redis Cluster (optionally one replica per master) of local redis-servers.

    Formed from Python (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE), ready once
    every node says ``cluster_state:ok`` and agrees on who owns every slot,
    and every replica's link to its master is up (in sync).
    ``node_timeout`` (ms) is small so that a killed master's replica takes
    over within seconds. Stopped by PID, every node, in ``stop()``.
    """

    def __init__(
        self, log_dir: str | Path, replicas: bool = False, node_timeout: int = 1000
    ) -> None:
        self.log_dir = Path(log_dir)
        self.node_timeout = node_timeout
        count = 6 if replicas else 3
        self.nodes: list[RedisServer] = []
        self.bus_ports: dict[int, int] = {}  # port -> cluster bus port
        for index in range(count):
            directory = self.log_dir / f"cluster-node-{index}"
            node = RedisServer(log_dir=self.log_dir, directory=directory)
            taken = {*self.bus_ports, *self.bus_ports.values()}
            while node.port in taken:  # free now, but maybe handed out twice: all start later
                node.port = free_port()
                node.log_path = node.log_dir / f"{node.name}-{node.port}.log"
            bus_port = free_port()
            while bus_port in taken or bus_port == node.port:
                bus_port = free_port()
            node.extra_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / "nodes.conf"),
                "--cluster-port", str(bus_port),  # else port + 10000, maybe > 65535
                "--cluster-node-timeout", str(node_timeout),
                "--cluster-replica-validity-factor", "0",  # always promote
                "--repl-diskless-sync-delay", "0",  # replicas in sync at once, not after 5 s
            ]  # fmt: skip
            self.nodes.append(node)
            self.bus_ports[node.port] = bus_port
        self.masters = self.nodes[:3]
        self.replicas = self.nodes[3:]
        self.ids: dict[int, str] = {}  # port -> node id

    @property
    def url(self) -> str:
        """SSE_REDIS_URL: the first master (any node would do)."""
        return self.masters[0].url

    def start(self) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                with node.client() as client:
                    self.ids[node.port] = client.execute_command("CLUSTER MYID").decode()
            for node, (first, last) in zip(self.masters, CLUSTER_SLOT_RANGES, strict=True):
                with node.client() as client:
                    client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
            with self.masters[0].client() as client:
                for node in self.nodes[1:]:
                    client.execute_command(
                        "CLUSTER MEET", "127.0.0.1", node.port, self.bus_ports[node.port]
                    )
            for replica, master in zip(self.replicas, self.masters, strict=False):
                with replica.client() as client:
                    self._wait(
                        lambda c=client, m=master: (
                            self.ids[m.port] in str(c.execute_command("CLUSTER NODES"))
                        ),
                        f"replica {replica.port} to learn of master {master.port}",
                    )
                    client.execute_command("CLUSTER REPLICATE", self.ids[master.port])
            self.wait_ok()
            for replica in self.replicas:
                with replica.client() as client:
                    self._wait(
                        lambda c=client: c.info("replication").get("master_link_status") == "up",
                        f"replica {replica.port} in sync with its master",
                    )
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok`` and all agree on the slots."""
        self._wait(self._agreed, "the cluster to be ok and agree on its slots", timeout)

    def _agreed(self) -> bool:
        maps = []
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with node.client(socket_timeout=2) as client:
                    if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                        return False
                    maps.append(self._slot_map(client))
            except OSError:
                return False
            except Exception as exc:  # redis.ConnectionError is not an OSError
                if "Connection" in type(exc).__name__ or "Timeout" in type(exc).__name__:
                    return False
                raise
        return all(found == maps[0] for found in maps)

    @staticmethod
    def _slot_map(client) -> list[tuple[int, int, int]]:
        return sorted(
            (int(entry[0]), int(entry[1]), int(entry[2][1]))
            for entry in client.execute_command("CLUSTER SLOTS")
        )

    def _wait(self, check, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ServerError(f"Not {what} after {timeout} s.")
            time.sleep(0.05)

    def owner_of(self, slot: int) -> RedisServer:
        """Return the master that owns ``slot`` now (as the first running node sees it)."""
        node = next(n for n in self.nodes if n.running)
        with node.client() as client:
            for first, last, port in self._slot_map(client):
                if first <= slot <= last:
                    return next(n for n in self.nodes if n.port == port)
        raise ServerError(f"No node owns slot {slot}.")

    def migrate_slot(self, slot: int, target: RedisServer, batch: int = 100) -> int:
        """Move ``slot`` and its keys to master ``target``, as ``redis-cli --cluster reshard``; return keys moved."""
        source = self.owner_of(slot)
        source_id, target_id = self.ids[source.port], self.ids[target.port]
        moved = 0
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
            # The new owner first, then the old one, then the rest (as redis-cli does).
            for node in [target, source, *(n for n in self.masters if n not in (source, target))]:
                if node.running:
                    with node.client() as client:
                        client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
