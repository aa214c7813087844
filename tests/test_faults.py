"""The fault suite: real redis-server and gunicorn -k gevent, each test bounded in time.

* Redis SIGKILLed and restarted during a publish storm: no stream is dropped;
  with AOF (appendfsync always) nothing acknowledged is lost; without it,
  ``stream-reset`` tells the clients.
* A client that vanishes without closing (no FIN), two ways:

  - its process is paused (SIGSTOP): the kernel keeps acknowledging, so
    only data can reveal it: events fill its window and the server's
    buffers until the send stalls, and the connection is dropped;
  - its traffic is dropped (a private network namespace, where ``tc``
    throttles the packets to its port to nothing): nothing acknowledges
    the heartbeats, which alone reveal it, with no event published.

  Both are run because they fail differently: a paused reader keeps a zero
  window (a browser tab whose process hangs), dropped traffic is a laptop
  closed or a phone out of coverage, the common case in production.
* 5,000 connect/disconnect cycles leave the worker as it was.
* A slow reader among fast ones is dropped at its queue bound; the fast
  ones get everything.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import django_sse
from django_sse.exceptions import PublishError
from tests.support.procfs import process_stats
from tests.support.redis_helpers import (
    eventually,
    get_stats,
    open_live,
    redis_connections_of,
    wait_live,
)
from tests.support.servers import REPO_TOP
from tests.support.sse import SseClient, StreamEnded

pytestmark = pytest.mark.integration


def _gunicorn(servers, redis, **env: str):
    return servers.gunicorn(
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url, "DJANGO_SSE_TEST_HEARTBEAT": "0.5", **env}
    )


# --- Redis killed during a publish storm -----------------------------------------


class Storm:
    """Publish "0".."count-1" on ``channel`` as fast as Redis allows, retrying each failed publish.

    ``acked`` are the numbers whose ``send_event`` returned an id; ``failed``
    those that raised at least once (Redis may have recorded them anyway, so
    they alone may arrive twice).
    """

    def __init__(self, channel: str, count: int) -> None:
        self.channel = channel
        self.count = count
        self.acked: set[int] = set()
        self.failed: set[int] = set()
        self.thread = threading.Thread(target=self._run)
        self.error: Exception | None = None

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        try:
            for n in range(self.count):
                while True:
                    try:
                        django_sse.send_event("n", str(n), channel=self.channel)
                    except PublishError:
                        self.failed.add(n)
                        assert time.monotonic() < deadline, "Redis never came back"
                        time.sleep(0.02)
                        continue
                    self.acked.add(n)
                    break
                time.sleep(0.003)
        except Exception as exc:  # reported by the test
            self.error = exc


def _read_storm(client: SseClient, last: int, out: list, timeout: float = 60) -> None:
    """Append to ``out`` every event of the storm (ints) and every stream-reset, until ``last``."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            [event] = client.read_events(1, timeout=max(0.01, deadline - time.monotonic()))
            if event.type == "n":
                out.append(int(event.data))
                if out[-1] == last:
                    return
            elif event.type == "stream-reset":
                out.append(event)
    except Exception as exc:  # reported by the test
        out.append(exc)


def _storm_with_a_kill(servers, settings, appendonly: bool, count: int = 1500):
    redis = servers.redis(appendonly=appendonly)
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = 1
    gunicorn = _gunicorn(servers, redis)
    clients = [open_live(gunicorn.port, "/events/storm/") for _ in range(6)]
    received: list[list] = [[] for _ in clients]
    readers = [
        threading.Thread(target=_read_storm, args=(client, count - 1, out))
        for client, out in zip(clients, received, strict=True)
    ]
    storm = Storm("storm", count)
    for thread in [*readers, storm.thread]:
        thread.start()
    try:
        eventually(lambda: len(storm.acked) >= count // 4, timeout=20, interval=0.01)
        redis.kill()  # SIGKILL, mid-storm
        acked_at_kill = len(storm.acked)
        time.sleep(0.5)
        redis.start()  # same port, same directory (and AOF file)
        storm.thread.join(90)
        for reader in readers:
            reader.join(60)
        ended = [index for index, client in enumerate(clients) if client.ended]
    finally:
        for client in clients:
            client.close()
    print(
        f"AOF {'on' if appendonly else 'off'}: {count} events, Redis SIGKILLed after "
        f"{acked_at_kill}; {len(storm.failed)} publishes failed and were retried"
    )
    assert storm.error is None, storm.error
    return storm, received, ended


def test_redis_sigkilled_in_a_publish_storm_with_aof_loses_no_acknowledged_event(servers, settings):
    """AOF on: Redis SIGKILLed mid-storm; 6 streams stay open and get every acknowledged event, in order."""
    storm, received, ended = _storm_with_a_kill(servers, settings, appendonly=True)

    assert ended == []
    assert storm.failed, "the kill did not hit the storm"
    for index, got in enumerate(received):
        assert all(isinstance(item, int) for item in got), (index, got[-3:])  # no reset, no error
        assert got == sorted(got), f"client {index} got events out of order"
        assert set(got) >= storm.acked, f"client {index} lost {sorted(storm.acked - set(got))[:10]}"
        assert set(got) <= storm.acked | storm.failed
        twice = {n for n in got if got.count(n) > 1}
        assert twice <= storm.failed, f"client {index} got {sorted(twice)} twice"


def test_redis_sigkilled_in_a_publish_storm_without_aof_sends_stream_reset_and_streams_go_on(
    servers, settings
):
    """AOF off: history is gone after the restart; each stream gets stream-reset, then the storm to its end."""
    storm, received, ended = _storm_with_a_kill(servers, settings, appendonly=False)

    assert ended == []
    for index, got in enumerate(received):
        resets = [item for item in got if not isinstance(item, int)]
        numbers = [item for item in got if isinstance(item, int)]
        assert resets and all(getattr(r, "type", None) == "stream-reset" for r in resets), (
            index,
            resets,
        )
        assert json.loads(resets[0].data) == {"channels": ["storm"]}
        assert numbers == sorted(numbers) and numbers[-1] == storm.count - 1
        twice = {n for n in numbers if numbers.count(n) > 1}
        assert twice <= storm.failed


# --- a client that vanishes without closing ---------------------------------------

_PAUSED_CLIENT = r"""
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(count):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events/vanish/ HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    body = b""
    while b"id: " not in body:  # live
        body += sock.recv(65536)
    socks.append(sock)
print("live", flush=True)
time.sleep(3600)  # never read again; the test SIGSTOPs, then SIGKILLs this process
"""


def test_a_paused_client_is_dropped_once_its_window_stays_closed(servers, settings):
    """A client process SIGSTOPped with 3 streams open is dropped as events fill its window; a healthy one gets all."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    gunicorn = _gunicorn(servers, redis, DJANGO_SSE_TEST_QUEUE_SIZE="50")
    healthy = open_live(gunicorn.port, "/events/vanish/")
    paused = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CLIENT, str(gunicorn.port), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    got: list = []
    reader = None
    try:
        assert paused.stdout.readline().strip() == "live"
        assert get_stats(gunicorn.port)["streams"] == 4
        os.kill(paused.pid, signal.SIGSTOP)
        stopped = time.monotonic()

        def read_healthy() -> None:
            try:
                while True:
                    [event] = healthy.read_events(1, timeout=60)
                    got.append(event.data[:6])
                    if event.data.startswith("end"):
                        return
            except Exception as exc:  # reported below
                got.append(exc)

        reader = threading.Thread(target=read_healthy)
        reader.start()
        published = 0
        deadline = time.monotonic() + 45
        while get_stats(gunicorn.port)["streams"] > 1:
            assert time.monotonic() < deadline, f"still {get_stats(gunicorn.port)}"
            for _ in range(10):
                django_sse.send_event("big", f"{published:06d}" + "x" * 16_000, channel="vanish")
                published += 1
            time.sleep(0.2)
        dropped_after = time.monotonic() - stopped
        django_sse.send_event("big", "end", channel="vanish")
        reader.join(60)
        stats = get_stats(gunicorn.port)
    finally:
        paused.kill()  # SIGKILL works on a stopped process
        paused.wait(10)
        healthy.close()

    print(
        f"paused client (3 streams, SO_RCVBUF 4096) dropped {dropped_after:.1f} s after SIGSTOP, "
        f"after {published} events of 16 KB"
    )
    log = gunicorn.stderr_text(10**6)
    assert got == [f"{n:06d}" for n in range(published)] + ["end"]
    assert stats["streams"] == 1 and stats["hub_listeners"] == 1
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


_NETNS_SCENARIO = r"""
import json, subprocess, sys, time
from tests.support.redis_helpers import eventually, get_stats
from tests.support.servers import GunicornServer
from tests.support.sse import SseClient

def tc(*args):
    subprocess.run(["tc", *args], check=True, capture_output=True)

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = GunicornServer(env={"DJANGO_SSE_TEST_HEARTBEAT": "0.5"}, log_dir=sys.argv[1]).start()
try:
    healthy = SseClient.connect(server.port, "/ticks/?interval=3600")
    gone = [SseClient.connect(server.port, "/ticks/?interval=3600") for _ in range(3)]
    for client in [healthy, *gone]:
        client.read_events(1)
    before = get_stats(server.port)["streams"]
    # Packets to the vanished clients' ports go to a class of 8 bit/s with a
    # one-packet queue: dropped, as if the client's network were gone.
    tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
    tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
    tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:99", "htb", "rate", "8bit", "ceil", "8bit")
    tc("qdisc", "add", "dev", "lo", "parent", "1:99", "handle", "99:", "pfifo", "limit", "1")
    for client in gone:
        port = client.sock.getsockname()[1]
        tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
           "u32", "match", "ip", "dport", str(port), "0xffff", "flowid", "1:99")
    dropped = time.monotonic()
    stats = eventually(lambda: (s := get_stats(server.port))["streams"] == 1 and s, timeout=40)
    detected_after = time.monotonic() - dropped
    healthy_beats = len(healthy.read_bytes_until(lambda body: body.count(b":\n\n") >= 3))
    print(json.dumps({"before": before, "after": stats["streams"], "detected_after": detected_after,
                      "finally": stats["iterator_finally"], "started": stats["iterator_started"],
                      "healthy_ended": healthy.ended}))
finally:
    server.stop()
"""


@pytest.fixture
def netns():
    """A private network namespace (its own loopback), deleted after the test."""
    name = f"django-sse-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=True)


def test_a_client_whose_traffic_is_dropped_is_found_by_the_heartbeat_alone(netns, tmp_path):
    """In a private network namespace, 3 streams whose packets are dropped end with no event published."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _NETNS_SCENARIO, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO_TOP,
        env={**os.environ, "PYTHONPATH": str(REPO_TOP), "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    logs = "\n".join(path.read_text()[-3000:] for path in Path(tmp_path).glob("*.log"))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    report = json.loads(result.stdout.strip().splitlines()[-1])

    print(
        f"dropped traffic (heartbeat 0.5 s): 3 vanished streams found after "
        f"{report['detected_after']:.1f} s"
    )
    assert (report["before"], report["after"]) == (4, 1)
    assert "Traceback" not in logs and "ERROR" not in logs, logs  # a vanished client is no error
    assert report["finally"] == report["started"] - 1  # the healthy stream's iterator still runs
    assert not report["healthy_ended"]


# --- 5,000 connect/disconnect cycles ---------------------------------------------


def _settled(port: int) -> dict:
    return eventually(
        lambda: (
            (s := get_stats(port))["streams"] == 0
            and s["hub_listeners"] == 0
            and s["hub_channels"] == 0
            and s
        ),
        timeout=20,
    )


def test_5000_connect_disconnect_cycles_return_the_worker_to_its_baseline(servers):
    """RSS, greenlets, fds and Redis connections after 5,000 streams (FIN or RST, one or two channels) are as before."""
    redis = servers.redis()
    gunicorn = _gunicorn(servers, redis)
    [worker] = gunicorn.worker_pids()
    total, threads_count = 5000, 5
    errors: list = []

    def cycles(thread: int, count: int) -> None:
        try:
            for n in range(count):
                path = f"/events/cyc{(n + thread) % 25}/"
                if n % 10 == 0:
                    path = f"/multi/?channel=cyc{n % 25}&channel=shared"
                client = SseClient.connect(gunicorn.port, path)
                assert client.status == 200
                if n % 2:
                    wait_live(client)  # subscribed and caught up
                else:
                    client.read_bytes_until(lambda body: body.endswith(b":\n\n"))
                client.abort() if n % 3 == 0 else client.close()
        except Exception as exc:  # reported below
            errors.append(exc)

    def run(count: int) -> None:
        workers = [
            threading.Thread(target=cycles, args=(t, count // threads_count))
            for t in range(threads_count)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(180)

    def measure() -> dict:
        stats = _settled(gunicorn.port)
        admin = redis.client()
        try:
            clients = len(admin.client_list()) - 1  # not this one
        finally:
            # Gone before the next count (redis-py 5.0 keeps a from_url pool's connection).
            admin.connection_pool.disconnect()
        return {
            "rss_mib": process_stats(worker).rss / 2**20,
            "greenlets": stats["greenlets"],
            "fds": stats["fds"],
            "redis_connections": redis_connections_of(worker, redis.port),
            "redis_clients": clients,
        }

    run(500)  # warm up: imports, pools, the first greenlets
    baseline = measure()
    started = time.monotonic()
    run(total)
    elapsed = time.monotonic() - started
    after = measure()

    tolerance = {"rss_mib": 8, "greenlets": 3, "fds": 3, "redis_connections": 0, "redis_clients": 0}
    print(f"{total} cycles in {elapsed:.1f} s ({len(errors)} errors)")
    for name, limit in tolerance.items():
        print(
            f"  {name}: baseline {baseline[name]:.1f}, after {after[name]:.1f} (tolerance +{limit})"
        )
    assert errors == []
    for name, limit in tolerance.items():
        assert after[name] <= baseline[name] + limit, name
    assert after["redis_connections"] == 2


# --- a slow reader among fast readers -----------------------------------------------


def _connect_small_window(port: int, path: str) -> SseClient:
    """Open a stream on a socket whose receive buffer (so TCP window) is 4 KB."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    client = SseClient(sock)
    client._read_head(time.monotonic() + 10)
    return client


def test_a_slow_reader_is_dropped_at_its_queue_bound_while_fast_readers_get_everything(
    servers, settings
):
    """6 fast readers and one reading ~80 KB/s: the fast get all 300 events of 32 KB, the slow one is cut off.

    9.6 MB is far more than the kernel buffers of one connection (here up to
    4 MB of send buffer), so the slow stream's writes block and its queue
    (50 events) overflows; the events are paced (~8 MB/s) so that the fast
    readers, Python threads, keep up.
    """
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    gunicorn = _gunicorn(servers, redis, DJANGO_SSE_TEST_QUEUE_SIZE="50")
    count, size = 300, 32 * 1024
    fast = [open_live(gunicorn.port, "/events/mixed/") for _ in range(6)]
    slow = _connect_small_window(gunicorn.port, "/events/mixed/")
    wait_live(slow)
    results: dict[int, list] = {}
    stop_slow = threading.Event()

    def read_fast(index: int) -> None:
        try:
            events = fast[index].read_events(count, timeout=90)
            results[index] = [event.data for event in events]
        except Exception as exc:  # reported below
            results[index] = [exc]

    def read_slow() -> None:
        # At most 4 KB (the receive buffer) every 50 ms: ~80 KB/s.
        while not stop_slow.is_set() and not slow.ended:
            slow._recv(time.monotonic() + 0.5)
            time.sleep(0.05)

    threads = [threading.Thread(target=read_fast, args=(i,)) for i in range(len(fast))]
    threads.append(threading.Thread(target=read_slow))
    for thread in threads:
        thread.start()
    try:
        for n in range(count):
            django_sse.send_event("big", f"{n:06d}" + "x" * (size - 6), channel="mixed")
            time.sleep(0.004)
        for thread in threads[:-1]:
            thread.join(120)
        stats = eventually(
            lambda: (s := get_stats(gunicorn.port))["streams"] == 6 and s, timeout=30
        )
        stop_slow.set()
        threads[-1].join(10)
        rest = b""
        if not slow.ended:
            try:
                rest = slow.read_to_end(timeout=15)
            except StreamEnded:
                pass
    finally:
        for client in [*fast, slow]:
            client.close()

    slow_got = [event.data[:6] for event in slow.events]
    print(f"the slow reader got {len(slow_got)} of {count} events before it was dropped")
    expected = [f"{n:06d}" + "x" * (size - 6) for n in range(count)]
    for index in range(len(fast)):
        assert results[index] == expected, f"fast reader {index}"
    assert stats["streams"] == 6 and stats["hub_listeners"] == 6
    assert slow.ended or rest
    assert len(slow_got) < count
    assert slow_got == [f"{n:06d}" for n in range(len(slow_got))]  # a prefix: nothing skipped
