"""Graceful shutdown with a real gunicorn master: HUP (reload) and TERM, streams open.

gunicorn.conf.py's ``post_worker_init`` watches the worker; once the master
tells it to stop, every stream ends with a ``retry:`` hint, clients
reconnect (to the new workers after HUP) with ``Last-Event-ID``, and the
worker exits long before ``graceful_timeout``.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import django_sse
from tests.reconnecting import Resuming, read_in_threads
from tests.sseclient import SseClient

pytestmark = pytest.mark.integration

GRACEFUL_TIMEOUT = 20  # seconds; streams must not make a worker use them


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], timeout: float) -> float:
    """Return the seconds until every one of ``pids`` exited; fail after ``timeout``."""
    started = time.monotonic()
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() - started < timeout, f"still running: {pids}"
        time.sleep(0.02)
    return time.monotonic() - started


def test_hup_ends_every_stream_with_a_retry_hint_and_resuming_clients_get_the_complete_sequence(
    servers, settings
):
    """HUP during a publish run: old workers exit fast; 8 clients resume on the new ones with no gap or duplicate."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    gunicorn = servers.gunicorn(
        workers=2,
        env={
            "DJANGO_SSE_TEST_REDIS_URL": redis.url,
            "DJANGO_SSE_TEST_HEARTBEAT": "0.5",
            "SSE_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        },
    )
    old_workers = gunicorn.worker_pids()
    count = 400
    # Browser-like: each reconnects on its kept-alive connection if the server leaves it open.
    readers = [Resuming(gunicorn.port, "/worker-events/deploy/", keep_alive=True) for _ in range(8)]
    for reader in readers:
        reader.client.read_bytes_until(lambda body: b"id: " in body, timeout=15)  # live
    published = threading.Event()

    errors: list = []

    def publish() -> None:
        try:
            for n in range(count):
                django_sse.send_event("n", str(n), channel="deploy")
                time.sleep(0.01)
        except Exception as exc:  # reported below
            errors.append(exc)
        published.set()

    reading, received = read_in_threads(readers, count, event="n")
    threads = [threading.Thread(target=publish), *reading]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # a quarter of the run
        assert not published.is_set()
        gunicorn.hup()
        exited_after = _wait_gone(old_workers, timeout=GRACEFUL_TIMEOUT + 5)
        for thread in threads:
            thread.join(90)
    finally:
        for reader in readers:
            reader.close()
    new_workers = gunicorn.worker_pids()

    print(
        f"old workers {old_workers} exited {exited_after:.2f} s after HUP "
        f"(graceful_timeout {GRACEFUL_TIMEOUT} s); streams per client: "
        f"{[len(reader.pids) for reader in readers]}"
    )
    expected = [str(n) for n in range(count)]
    assert errors == []
    for index, reader in enumerate(readers):
        assert received[index] == expected, f"client {index}"
        assert int(reader.pids[0]) in old_workers
        assert reader.endings and all(end.endswith(b"retry: 2000\n\n") for end in reader.endings)
        assert int(reader.pids[-1]) in new_workers
        assert reader.resets == []
        assert reader.reused == 0  # the server closed each connection whose stream it ended
    assert not set(new_workers) & set(old_workers)
    assert exited_after < GRACEFUL_TIMEOUT / 2


def test_a_stream_asked_of_a_stopping_worker_gets_a_retry_hint_rather_than_a_503(servers):
    """A stream asked on a kept-alive connection of a worker that is stopping: 200, a retry hint, connection closed."""
    gunicorn = servers.gunicorn(env={"SSE_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT)})
    idle = SseClient.connect(
        gunicorn.port, "/plain/"
    )  # a page's request: its connection stays open
    idle.read_to_end()
    stream = SseClient.connect(gunicorn.port, "/ticks/?interval=0.5")
    try:
        stream.read_events(1)
        gunicorn.hup()
        stream.read_to_end(timeout=10)  # the old worker is stopping now
        # The browser's EventSource reconnects on the idle kept-alive connection.
        idle.sock.sendall(
            f"GET /ticks/ HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        answer = SseClient(idle.sock)
        answer._read_head(time.monotonic() + 10)
        body = answer.read_to_end(timeout=10)
        idle.sock.settimeout(5)
        after = idle.sock.recv(100)
    finally:
        idle.close()
        stream.close()

    assert answer.status == 200, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    assert body == b"retry: 2000\n\n"
    assert answer.headers.get("Connection", "").lower() == "close"
    assert after == b""  # closed: the reconnection goes to a new worker


def test_term_with_100_open_streams_ends_them_all_and_the_master_exits_well_within_graceful_timeout(
    servers, redis_url
):
    """TERM the master with 100 streams open (Redis, ticking and blocked views): all end with a retry hint; it exits fast."""
    gunicorn = servers.gunicorn(
        workers=2,
        env={
            "DJANGO_SSE_TEST_REDIS_URL": redis_url,
            "DJANGO_SSE_TEST_HEARTBEAT": "1",
            "SSE_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        },
    )
    workers = gunicorn.worker_pids()
    paths = [
        "/events/term-{n}/",
        "/ticks/?interval=0.5&{n}",
        "/blocked/?{n}",
        "/multi/?channel=a&channel=t{n}",
    ]
    clients = [SseClient.connect(gunicorn.port, paths[n % 4].format(n=n)) for n in range(100)]
    try:
        for client in clients:
            client.read_bytes_until(
                lambda body: body.startswith(b"retry: 2000\n\n:\n\n"), timeout=15
            )
        master = gunicorn.pid
        process = gunicorn.process
        started = time.monotonic()
        gunicorn.term()
        process.wait(GRACEFUL_TIMEOUT + 5)
        master_exited = time.monotonic() - started
        workers_exited = _wait_gone(workers, timeout=5)
        for client in clients:
            client.read_to_end(timeout=5)
    finally:
        for client in clients:
            client.close()

    print(f"master {master} exited {master_exited:.2f} s after TERM with 100 open streams")
    assert [client.status for client in clients] == [200] * 100
    not_ended_cleanly = [
        (index, client.body[-60:])
        for index, client in enumerate(clients)
        if client.reset or not client.body.endswith(b"retry: 2000\n\n")
    ]
    assert not_ended_cleanly == []
    assert process.returncode == 0
    assert master_exited < GRACEFUL_TIMEOUT / 2
    assert workers_exited < 5
    assert not os.path.exists(f"/proc/{master}") or _gone(master)
