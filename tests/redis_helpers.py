"""Helpers shared by the Redis tests: stats, readiness, and who holds which connection."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.sseclient import SseClient


def get_stats(port: int) -> dict:
    """Return the test project's /stats/ (of whichever worker answers)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=10) as response:
        return json.loads(response.read())


def eventually(check: Callable[[], object], timeout: float = 10, interval: float = 0.1):
    """Return ``check()``'s first true value, or raise AssertionError with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Still {value!r} after {timeout} s.")
        time.sleep(interval)


def stats_when(port: int, predicate: Callable[[dict], bool], timeout: float = 15) -> dict:
    """Return /stats/ once ``predicate(stats)`` holds; raise AssertionError with the last ones."""
    deadline = time.monotonic() + timeout
    while True:
        stats = get_stats(port)
        if predicate(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"After {timeout} s, /stats/ is still {stats}")
        time.sleep(0.1)


def wait_live(client: SseClient, timeout: float = 15) -> None:
    """Wait until the stream has caught up and gone live.

    A ``RedisQueueView`` stream that has subscribed and read its channels'
    history sends the client's position (an ``id:`` line without data); every
    event published after that reaches it.
    """
    client.read_bytes_until(lambda body: b"id: " in body, timeout=timeout)


def open_live(port: int, path: str, timeout: float = 15, **kwargs) -> SseClient:
    """Open a stream, check it is a 200 event stream, and wait until it is live."""
    client = SseClient.connect(port, path, timeout=timeout, **kwargs)
    assert client.status == 200, (client.status, client.body)
    wait_live(client, timeout)
    return client


def data_of(client: SseClient, count: int, timeout: float = 15, event: str | None = None) -> list:
    """Return the data of the next ``count`` events (of type ``event``, when given)."""
    found = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        [item] = client.read_events(1, timeout=max(0.01, deadline - time.monotonic()))
        if event is None or item.type == event:
            found.append(item.data)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def redis_connections_of(pid: int, redis_port: int) -> int:
    """Return how many established TCP connections ``pid`` holds to ``redis_port``."""
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            if remote_port == redis_port and established and fields[9] in inodes:
                count += 1
    return count


def other_redis_clients(admin) -> list[dict]:
    """Return Redis's clients other than ``admin`` itself (CLIENT LIST has no pid)."""
    own = admin.client_id()
    return [client for client in admin.client_list() if int(client["id"]) != own]


def gunicorn_on_redis(redis_url: str, log_dir, workers: int = 1, **env: str):
    """Return a started gunicorn (gevent) of the test project using ``redis_url``."""
    from tests.servers import GunicornServer

    server = GunicornServer(
        env={"DJANGO_SSE_TEST_REDIS_URL": redis_url, **env}, log_dir=log_dir, workers=workers
    )
    return server.start()


def connect(port: int, path: str, last_event_id: str | None = None) -> SseClient:
    """Open a stream, resuming after ``last_event_id`` when given; assert it is a 200."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    client = SseClient.connect(port, path, headers=headers, timeout=15)
    assert client.status == 200, (client.status, client.body[:500])
    return client


def wait_position(client: SseClient, timeout: float = 15) -> str:
    """Wait for the id a new stream sends once it is live; return it."""
    client.read_bytes_until(lambda _: client.parser.last_event_id != "", timeout=timeout)
    return client.parser.last_event_id


def multi_path(*channels: str) -> str:
    """Return the path of a stream on several channels (the test project's /multi/)."""
    return "/multi/?" + urllib.parse.urlencode([("channel", c) for c in channels])
