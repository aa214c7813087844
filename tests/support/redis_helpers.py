"""Helpers of the tests that stream from the test project: going live, reading data, stats.

``eventually``, ``get_stats`` and ``redis_connections_of`` come from
``tests.support`` (the layer the benchmarks share) and are re-exported here.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable

from tests.support.polling import eventually
from tests.support.procfs import redis_connections_of
from tests.support.sse import SseClient
from tests.support.stats import get_stats

__all__ = [
    "connect",
    "data_of",
    "eventually",
    "get_stats",
    "multi_path",
    "open_live",
    "other_redis_clients",
    "redis_connections_of",
    "stats_when",
    "wait_live",
    "wait_position",
]


def stats_when(port: int, predicate: Callable[[dict], bool], timeout: float = 15) -> dict:
    """Return /stats/ once ``predicate(stats)`` holds; raise AssertionError with the last ones."""
    return eventually(lambda: get_stats(port), timeout, until=predicate, what="/stats/ as expected")


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


def other_redis_clients(admin) -> list[dict]:
    """Return Redis's clients other than ``admin`` itself (CLIENT LIST has no pid)."""
    own = admin.client_id()
    return [client for client in admin.client_list() if int(client["id"]) != own]


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
