"""The processes of a benchmark run, and what /proc and Redis say about them.

``RedisProcess`` (no persistence), ``LibraryServer`` (gunicorn, the project's
``gunicorn.conf.py``, one gevent worker, ``benchmarks.project``) and
``CeilingServer`` (``benchmarks.ceiling``) each run in their own process
group on a free 127.0.0.1 port and are stopped by PID. ``worker_stats()``
reads the serving process's resident memory, open fds and CPU time from
/proc; ``redis_connections()`` counts the Redis clients (``CLIENT LIST``)
whose address is a socket of that process.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_TOP = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


class ServerError(RuntimeError):
    """A process died, or did not come up in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A subprocess in its own process group, logging to a file."""

    name = "process"

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self.port = free_port()
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="django-sse-bench-"))
        self.log_path = self.log_dir / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO_TOP,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env()},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL what is left of it."""
        process, self.process = self.process, None
        if process is None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(5)
        _signal_group(process.pid, signal.SIGKILL)  # workers that outlived their master

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class RedisProcess(Process):
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not on PATH; run scripts/install-system-deps.")
        return [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.log_dir),
            "--maxclients", "10000",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url)


class HttpServer(Process):
    """A server of streams; ``worker_pid`` is the process that serves them."""

    kind = "server"
    worker_pid = 0

    def __init__(self, redis_url: str, log_dir: str | Path | None = None) -> None:
        super().__init__(log_dir)
        self.redis_url = redis_url

    def ready(self) -> bool:
        try:
            stats = self.stats(timeout=2)
        except (OSError, http.client.HTTPException, ValueError):
            return False
        self.worker_pid = stats["pid"]
        return True

    def stats(self, timeout: float = 60, query: str = "") -> dict:
        """GET /stats/: what the serving process holds (streams, greenlets, fds...)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", "/stats/" + (f"?{query}" if query else ""))
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise ValueError(f"/stats/ answered {response.status}")
        return json.loads(body)


class LibraryServer(HttpServer):
    """django-sse under gunicorn: ``-c gunicorn.conf.py benchmarks.project.wsgi``, one worker."""

    name = kind = "library"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "-c", "gunicorn.conf.py",
            "benchmarks.project.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "benchmarks.project.settings",
            "BENCH_REDIS_URL": self.redis_url,
            "SSE_PYTHONPATH": str(REPO_TOP),  # gunicorn.conf.py adds the example project otherwise
        }


class CeilingServer(HttpServer):
    """The raw gevent server of ``benchmarks.ceiling``."""

    name = kind = "ceiling"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "benchmarks.ceiling",
            "--port", str(self.port),
            "--redis-url", self.redis_url,
        ]  # fmt: skip


SERVERS = {"library": LibraryServer, "ceiling": CeilingServer}


def worker_stats(pid: int) -> dict:
    """Resident memory (bytes), open fds and CPU seconds (user + system) of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is proc(5) field 3
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss": int(fields[24 - 3]) * os.sysconf("SC_PAGE_SIZE"),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu": (int(fields[14 - 3]) + int(fields[15 - 3])) / ticks,
    }


def _local_ports_to(pid: int, remote_port: int) -> set[int]:
    """The local ports of ``pid``'s TCP sockets connected to ``remote_port``."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def redis_connections(pid: int, redis_process: RedisProcess) -> int:
    """Count the entries of Redis's CLIENT LIST that are connections of ``pid``."""
    ports = _local_ports_to(pid, redis_process.port)
    with redis_process.client() as client:
        entries = client.client_list()
    return sum(1 for entry in entries if int(entry["addr"].rsplit(":", 1)[1]) in ports)
