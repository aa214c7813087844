"""The test harness itself (servers.py, sseclient.py), checked against real processes."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.support.procfs import process_stats
from tests.support.redis_helpers import get_stats
from tests.support.servers import TEST_WORKER_CLASS
from tests.support.sse import SseClient

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("appendonly", "expected"), [(True, b"kept"), (False, None)])
def test_redis_restart_keeps_data_only_with_appendonly(servers, appendonly, expected):
    """A SIGKILLed redis-server restarted on its port keeps writes with appendonly, not without."""
    redis = servers.redis(appendonly=appendonly)
    port, pid = redis.port, redis.pid
    with redis.client() as client:
        client.set("key", "kept")

    redis.kill()
    redis.start()

    assert (redis.port, redis.pid != pid) == (port, True)
    with redis.client() as client:
        assert client.get("key") == expected


def test_process_stats_sees_a_servers_connections_and_cpu(servers):
    """process_stats counts one fd per client of redis-server, and the CPU a busy script takes."""
    redis = servers.redis()
    with redis.client() as admin:
        while len(admin.client_list()) > 1:  # until the start-up probe's close is processed
            time.sleep(0.01)
        before = process_stats(redis.pid)
        clients = [socket.create_connection(("127.0.0.1", redis.port)) for _ in range(20)]
        try:
            for client in clients:  # once each answers, redis-server has accepted it
                client.sendall(b"PING\r\n")
                assert client.recv(16) == b"+PONG\r\n"
            connected = process_stats(redis.pid)
        finally:
            for client in clients:
                client.close()
        admin.eval("local i = 0 while i < 30000000 do i = i + 1 end return i", 0)
        after = process_stats(redis.pid)

    assert connected.fds == before.fds + 20
    assert after.cpu_seconds >= before.cpu_seconds + 0.05
    assert after.rss > 1_000_000
    assert after.threads >= 1


def test_gunicorn_hup_replaces_workers_and_stop_leaves_no_process(servers):
    """After HUP the master has new workers; stop() leaves neither master nor any worker."""
    gunicorn = servers.gunicorn(workers=2)
    old_workers = gunicorn.worker_pids()
    assert len(old_workers) == 2

    gunicorn.hup()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        new_workers = gunicorn.worker_pids()
        if len(new_workers) == 2 and not set(new_workers) & set(old_workers):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"Workers {old_workers} were not replaced after HUP: {gunicorn.worker_pids()}")
    master = gunicorn.pid

    gunicorn.stop()

    left = [pid for pid in [master, *old_workers, *new_workers] if os.path.exists(f"/proc/{pid}")]
    assert left == []


def test_the_tests_gunicorn_runs_the_worker_class_the_matrix_asks_for(servers):
    """$SSE_TEST_WORKER_CLASS (set by scripts/test for one combination) reaches the worker."""
    gunicorn = servers.gunicorn()

    assert get_stats(gunicorn.port)["worker_class"] == TEST_WORKER_CLASS


def test_sse_client_reassembles_chunks_cut_anywhere():
    """SseClient decodes a chunked stream that arrives a few bytes at a time, chunk by chunk."""
    chunks = [b"retry: 1500\n\n", b"data: one\n\n", b"event: x\nid: 7\ndata: two\n\n"]
    wire = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    wire += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    requests = []

    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                requests.append(conn.recv(65536))
                for start in range(0, len(wire), 3):
                    conn.sendall(wire[start : start + 3])
                    time.sleep(0.001)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = SseClient.connect(listener.getsockname()[1], "/stream", timeout=5)
        events = client.read_events(2, timeout=5)
        body = client.read_to_end(timeout=5)
        client.close()
        thread.join(5)

    assert requests[0].startswith(b"GET /stream HTTP/1.1\r\n")
    assert b"\r\nAccept: text/event-stream\r\n" in requests[0]
    assert (client.status, client.headers["content-type"]) == (200, "text/event-stream")
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("message", "one", ""),
        ("x", "two", "7"),
    ]
    assert client.parser.retry == 1500
    assert body == b"".join(chunks)
    assert [data for _, data in client.chunks] == chunks
    assert client.ended
