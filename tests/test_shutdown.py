"""Graceful shutdown with a real gunicorn master, with no django-sse hook in its config.

The library finds its gunicorn worker by itself (``django_sse.servers.gunicorn``):
once the master tells a worker to stop (TERM, HUP, ``max_requests``), every
stream ends with a ``retry:`` hint and the chunked body's last chunk, clients
reconnect (to the new workers after HUP) with ``Last-Event-ID``, and the
worker exits by itself before ``graceful_timeout``: no line in the server's
log says that the timeout was spent (``Server.forced_stops()``), and every
gunicorn worker ended its own run (``GunicornServer.killed_workers()``).
Each test runs with no config file (``-c /dev/null``), with a site's own
config file that knows nothing of django-sse, with the project's optional
``gunicorn.conf.py``, and with uvicorn's worker class on the ASGI app. The TERM test also runs on uvicorn
itself (``--timeout-graceful-shutdown``) and daphne (``django_sse.servers.uvicorn``, ``.daphne``).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import django_sse
from tests.support.polling import eventually
from tests.support.procfs import exited
from tests.support.reconnecting import Resuming, read_in_threads
from tests.support.servers import REPO_TOP, GunicornServer
from tests.support.sse import SseClient, spread_retry

pytestmark = pytest.mark.integration

GRACEFUL_TIMEOUT = 20  # seconds; streams must not make a worker use them up

# A site's own config file: its settings and hooks, nothing of django-sse.
SITE_CONFIG = """\
import logging

worker_class = "gevent"
worker_connections = 5000
graceful_timeout = {graceful}
accesslog = None


def post_worker_init(worker):
    logging.getLogger("site").info("worker %s ready", worker.pid)
"""


#: The ways gunicorn is configured; the last runs uvicorn's worker class on the ASGI app.
GUNICORN_WAYS = ["no config", "site config", "gunicorn.conf.py", "uvicorn worker"]


@pytest.fixture(params=GUNICORN_WAYS)
def config_args(request, tmp_path) -> dict:
    """GunicornServer arguments for one way of configuring gunicorn."""
    return _config_args(request.param, tmp_path)


def _config_args(way: str, tmp_path) -> dict:
    graceful = ["--graceful-timeout", str(GRACEFUL_TIMEOUT)]
    if way == "no config":
        return {"extra_args": graceful}  # -c /dev/null -k gevent
    if way == "uvicorn worker":
        return {
            "app": "tests.asgi:application",
            "worker_class": "uvicorn_worker.UvicornWorker",
            "extra_args": graceful,
        }
    if way == "site config":
        path = tmp_path / "site_gunicorn.py"
        path.write_text(SITE_CONFIG.format(graceful=GRACEFUL_TIMEOUT))
        return {"config": path}
    return {"config": REPO_TOP / "gunicorn.conf.py", "extra_args": graceful}


def _wait_gone(pids: list[int], timeout: float) -> float:
    """Return the seconds until every one of ``pids`` exited; fail after ``timeout``."""
    started = time.monotonic()
    eventually(
        lambda: all(exited(pid) for pid in pids), timeout, interval=0.02, what=f"gone: {pids}"
    )
    return time.monotonic() - started


def _cut_off(server, workers: list[int]) -> list[str]:
    """Return what shows that stopping ``server`` spent a graceful timeout instead of ending by itself."""
    found = server.forced_stops()
    if isinstance(server, GunicornServer):
        found += [f"worker {pid} killed" for pid in server.killed_workers(workers)]
    return found


def _publish_in_thread(
    channel: str, count: int, per_second: float, errors: list
) -> threading.Thread:
    def publish() -> None:
        try:
            for n in range(count):
                django_sse.send_event("n", str(n), channel=channel)
                time.sleep(1 / per_second)
        except Exception as exc:  # reported by the caller's assertions
            errors.append(exc)

    return threading.Thread(target=publish)


def _publish_to_live_readers(
    readers: list[Resuming], channel: str, count: int, per_second: float
) -> tuple[list[threading.Thread], list[list[str]], list]:
    """Once every reader is live, start publishing ``count`` events and reading them all.

    Returns the started threads (the publisher first), what each reader
    received, and the publisher's errors.
    """
    for reader in readers:
        reader.client.read_bytes_until(lambda body: b"id: " in body, timeout=15)  # live
    errors: list = []
    publisher = _publish_in_thread(channel, count, per_second, errors)
    reading, received = read_in_threads(readers, count, event="n", timeout=60)
    threads = [publisher, *reading]
    for thread in threads:
        thread.start()
    return threads, received, errors


def _wait_all_on(readers: list[Resuming], pids: list[int], timeout: float = 20) -> None:
    """Wait until every reader's current stream is served by one of ``pids``."""
    deadline = time.monotonic() + timeout
    wanted = {str(pid) for pid in pids}
    while not all(reader.pids[-1] in wanted for reader in readers):
        assert time.monotonic() < deadline, [reader.pids for reader in readers]
        time.sleep(0.05)


def test_hup_twice_ends_every_old_stream_cleanly_and_20_clients_get_the_complete_sequence(
    servers, settings, config_args
):
    """Two HUPs while 20 browser-like clients read 100 events/s: one clean end and one reconnection per HUP each, nothing lost."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    gunicorn = servers.gunicorn(
        workers=2,
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url, "DJANGO_SSE_TEST_HEARTBEAT": "1"},
        **config_args,
    )
    generations = [gunicorn.worker_pids()]
    count, rate = 800, 100
    readers = [
        Resuming(gunicorn.port, "/worker-events/hup/", keep_alive=True, wait_retry=True)
        for _ in range(20)
    ]
    threads, received, errors = _publish_to_live_readers(readers, "hup", count, rate)
    publisher = threads[0]
    exit_times = []
    try:
        for _ in range(2):
            time.sleep(1.5)
            gunicorn.hup()
            exit_times.append(_wait_gone(generations[-1], timeout=GRACEFUL_TIMEOUT + 5))
            new = [pid for pid in gunicorn.worker_pids() if pid not in generations[-1]]
            generations.append(new)
            _wait_all_on(readers, new)
        for thread in threads:
            thread.join(90)
    finally:
        for reader in readers:
            reader.close()

    print(
        f"{config_args}: old workers exited {[round(t, 2) for t in exit_times]} s after each HUP "
        f"(graceful_timeout {GRACEFUL_TIMEOUT} s); generations {generations}"
    )
    assert errors == []
    assert not publisher.is_alive()
    expected = [str(n) for n in range(count)]
    for index, reader in enumerate(readers):
        assert received[index] == expected, f"client {index}"
        served_by = [
            next(g for g, pids in enumerate(generations) if int(pid) in pids) for pid in reader.pids
        ]
        assert served_by == [0, 1, 2], f"client {index}: {reader.pids} of {generations}"
        assert reader.completions == [True, True], f"client {index}: {reader.endings}"
        assert all(spread_retry(end) for end in reader.endings), reader.endings
        assert reader.resets == []
        assert reader.reused == 0  # the server closed each connection whose stream it ended
    # Before the graceful timeout, and not cut off by it (however fast the machine).
    assert all(seconds < GRACEFUL_TIMEOUT for seconds in exit_times), exit_times
    assert _cut_off(gunicorn, [*generations[0], *generations[1]]) == []
    # SSE_RETRY_JITTER: the clients are told to come back at different times.
    hints = {spread_retry(end) for reader in readers for end in reader.endings}
    assert len(hints) > 10, hints


@pytest.fixture(params=[*GUNICORN_WAYS, "uvicorn", "daphne"])
def stopping_server(request, servers, redis_url, tmp_path):
    """A server on Redis: gunicorn (2 workers) configured one of four ways, uvicorn (2 workers), or daphne.

    uvicorn gets ``--timeout-graceful-shutdown GRACEFUL_TIMEOUT``; uvicorn and
    daphne end their streams by themselves (``django_sse.servers.uvicorn``, ``.daphne``).
    """
    env = {"DJANGO_SSE_TEST_REDIS_URL": redis_url, "DJANGO_SSE_TEST_HEARTBEAT": "1"}
    if request.param == "uvicorn":
        return servers.uvicorn(workers=2, env=env, graceful_timeout=GRACEFUL_TIMEOUT)
    if request.param == "daphne":
        return servers.daphne(env=env)
    return servers.gunicorn(workers=2, env=env, **_config_args(request.param, tmp_path))


def test_term_ends_every_stream_cleanly_and_the_master_exits_before_graceful_timeout(
    stopping_server,
):
    """TERM the master with 60 streams open (Redis, ticking and blocked views): all end with a retry hint and the last chunk."""
    gunicorn = stopping_server
    workers = gunicorn.worker_pids()
    paths = [
        "/events/term-{n}/",
        "/ticks/?interval=0.5&{n}",
        "/blocked/?{n}",
        "/multi/?channel=a&channel=t{n}",
    ]
    clients = [SseClient.connect(gunicorn.port, paths[n % 4].format(n=n)) for n in range(60)]
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
        _wait_gone(workers, timeout=GRACEFUL_TIMEOUT)
        for client in clients:
            client.read_to_end(timeout=5)
    finally:
        for client in clients:
            client.close()

    print(f"{gunicorn.name}: master {master} exited {master_exited:.2f} s after TERM, 60 streams")
    assert [client.status for client in clients] == [200] * 60
    not_ended_cleanly = [
        (index, client.body[-60:])
        for index, client in enumerate(clients)
        if not client.completed or not spread_retry(client.body)
    ]
    assert not_ended_cleanly == []
    assert len({spread_retry(client.body) for client in clients}) > 20  # spread out
    assert process.returncode == 0
    # Before the graceful timeout, and not cut off by it (however fast the machine).
    assert master_exited < GRACEFUL_TIMEOUT
    assert _cut_off(gunicorn, workers) == []
    assert not os.path.exists(f"/proc/{master}") or exited(master)


def test_max_requests_with_jitter_recycles_workers_and_resuming_clients_lose_nothing(
    servers, settings
):
    """--max-requests 4 --max-requests-jitter 3, no config file: recycled workers end streams cleanly; clients get everything."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    gunicorn = servers.gunicorn(
        workers=2,
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url},
        extra_args=["--max-requests", "4", "--max-requests-jitter", "3"],
    )
    first = gunicorn.worker_pids()
    count = 300
    # 16 streams on 2 workers recycled after at most 4 + 3 requests each: however the
    # master spreads them, at least one worker reaches its max_requests (16 > 2 x 7).
    readers = [
        Resuming(gunicorn.port, "/worker-events/recycle/", wait_retry=True) for _ in range(16)
    ]
    threads, received, errors = _publish_to_live_readers(readers, "recycle", count, 100)
    for thread in threads:
        thread.join(90)
    for reader in readers:
        reader.close()

    recycled = [pid for pid in first if exited(pid)]
    print(f"workers {first} -> {gunicorn.worker_pids()}; streams per client "
          f"{[len(reader.pids) for reader in readers]}")  # fmt: skip
    assert errors == []
    assert recycled, "no worker reached max_requests"
    for index, reader in enumerate(readers):
        assert received[index] == [str(n) for n in range(count)], f"client {index}"
        assert all(reader.completions), f"client {index}: {reader.endings}"
        assert all(spread_retry(end) for end in reader.endings), reader.endings
        assert reader.resets == []
    assert sum(len(reader.endings) for reader in readers) >= 2


def test_a_stream_asked_of_a_stopping_worker_gets_a_retry_hint_rather_than_a_503(servers):
    """A stream asked on a kept-alive connection of a worker that is stopping: 200, a retry hint, connection closed."""
    gunicorn = servers.gunicorn(
        extra_args=["--graceful-timeout", str(GRACEFUL_TIMEOUT), "--keep-alive", "5"]
    )
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
    assert spread_retry(body) and body.count(b"\n") == 2, body
    assert answer.completed
    assert answer.headers.get("Connection", "").lower() == "close"
    assert after == b""  # closed: the reconnection goes to a new worker


def test_uvicorn_restarted_while_events_flow_leaves_resuming_clients_missing_nothing(
    servers, settings
):
    """TERM uvicorn while 10 browser-like clients read 50 events/s, start it again: each ends cleanly once, nothing lost."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    uvicorn = servers.uvicorn(
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url, "DJANGO_SSE_TEST_HEARTBEAT": "1"},
        graceful_timeout=GRACEFUL_TIMEOUT,
    )
    count, rate = 200, 50
    readers = [Resuming(uvicorn.port, "/events/restart/", wait_retry=True) for _ in range(10)]
    threads, received, errors = _publish_to_live_readers(readers, "restart", count, rate)
    try:
        time.sleep(1.5)
        process = uvicorn.process
        started = time.monotonic()
        uvicorn.term()
        process.wait(GRACEFUL_TIMEOUT + 5)
        stopped = time.monotonic() - started
        uvicorn.start()  # the same port: the clients reconnect to it after their retry delay
        for thread in threads:
            thread.join(90)
    finally:
        for reader in readers:
            reader.close()

    print(
        f"uvicorn exited {stopped:.2f} s after TERM; endings per client: "
        f"{[len(reader.endings) for reader in readers]}"
    )
    assert errors == []
    # uvicorn re-raises the TERM it caught once it has shut down (as the default handler would).
    assert process.returncode in (0, -signal.SIGTERM)
    expected = [str(n) for n in range(count)]
    for index, reader in enumerate(readers):
        assert received[index] == expected, f"client {index}"
        assert reader.completions == [True], f"client {index}: {reader.endings}"
        assert all(spread_retry(end) for end in reader.endings), reader.endings
        assert reader.resets == []
    assert stopped < GRACEFUL_TIMEOUT
    assert _cut_off(uvicorn, []) == []
