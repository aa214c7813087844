"""ASGI: the asyncio seam, ``asend_event``, the mode a view picks, WSGI and ASGI servers on one Redis.

The suites of streaming, replay, limits, access, shutdown and bad input run
against uvicorn too (``server_kind``, tests/support/server_kinds.py); this
module holds what is ASGI's own, and runs every sample of
docs/guides/asgi.rst (``test_every_sample_is_exercised``, the last test).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

import django_sse
from django_sse.core.concurrency import AsyncWakeup
from django_sse.core.mailbox import Mailbox
from django_sse.exceptions import EventTooLarge
from django_sse.testing import memory_broker
from tests.support.readme_samples import SampleModules, Samples, track
from tests.support.redis_helpers import connect, eventually, get_stats, wait_position
from tests.support.servers import (
    REPO_TOP,
    HttpServer,
    ServerError,
    _gunicorn_has_control_socket,
    project_env,
)
from tests.support.sse import SseClient, spread_retry
from tests.views import AsyncTickView, ChannelView

PAGE = REPO_TOP / "docs" / "guides" / "asgi.rst"
SAMPLES = Samples(PAGE)
docs_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

ASGI_PY = SAMPLES.find("python", "# mysite/asgi.py")
COMMANDS = SAMPLES.find("console", "$ uvicorn mysite.asgi:application")
CLOCK = SAMPLES.find("python", "class AsyncClockView")
NOTIFY = SAMPLES.find("python", "# myapp/notify.py")

# --- the asyncio wakeup -------------------------------------------------------------


def test_a_wakeup_set_from_another_thread_wakes_the_waiting_coroutine():
    """set() from a thread resolves the coroutine's wait() on its loop."""

    async def main() -> tuple[bool, bool]:
        wakeup = AsyncWakeup()
        waiting = asyncio.ensure_future(wakeup.wait())
        for _ in range(10):
            await asyncio.sleep(0)  # the loop runs the wait, which must not return by itself
        early = waiting.done()
        thread = threading.Thread(target=wakeup.set)
        thread.start()
        await asyncio.wait_for(waiting, 5)
        thread.join()
        return early, waiting.done()

    early, woken = asyncio.run(main())
    assert (early, woken) == (False, True)


def test_a_set_before_the_first_wait_is_not_lost():
    """A wakeup set (in a thread, before any loop saw it) makes the first wait() return at once."""
    wakeup = AsyncWakeup()
    thread = threading.Thread(target=wakeup.set)
    thread.start()
    thread.join()

    async def main() -> None:
        await asyncio.wait_for(wakeup.wait(), 1)

    asyncio.run(main())
    assert wakeup.is_set()


def test_a_fan_out_from_a_thread_wakes_every_mailbox_with_one_loop_callback_per_batch():
    """1,000 asynchronous mailboxes woken by one thread: all wake, with far fewer call_soon_threadsafe calls."""
    calls = 0

    async def main() -> list[int]:
        nonlocal calls
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        mailboxes = [Mailbox(10, asynchronous=True) for _ in range(1000)]

        async def consume(mailbox: Mailbox) -> int:
            await mailbox.wait_async()
            return len(mailbox.take())

        tasks = [asyncio.create_task(consume(mailbox)) for mailbox in mailboxes]
        await asyncio.sleep(0)  # every consumer waits now

        def fan_out() -> None:
            for mailbox in mailboxes:
                mailbox.put(b"x")

        await asyncio.to_thread(fan_out)
        return await asyncio.wait_for(asyncio.gather(*tasks), 10)

    taken = asyncio.run(main())
    print(f"1000 mailboxes woken from a thread with {calls} call_soon_threadsafe call(s)")
    assert taken == [1] * 1000
    assert calls < 100


# --- the mode a view picks -------------------------------------------------------------


def test_an_async_iterator_under_wsgi_is_refused_naming_the_view_and_the_fix():
    """async def iterator() served through WSGI: ImproperlyConfigured before the stream starts."""
    request = RequestFactory().get("/async-ticks/")
    with memory_broker(), pytest.raises(ImproperlyConfigured) as caught:
        AsyncTickView.as_view()(request)

    message = str(caught.value)
    assert "AsyncTickView.iterator()" in message
    assert "ASGI server" in message and "plain generator" in message


def test_an_asgi_stream_response_dropped_unsent_gives_its_slot_back():
    """A response Django never sends (its client left while the view ran) frees its stream slot when collected."""
    import gc

    from django.test import AsyncRequestFactory

    from django_sse.core.runtime import streams

    with memory_broker():
        response = AsyncTickView.as_view()(AsyncRequestFactory().get("/async-ticks/"))
        held = len(streams), streams.open_responses()
        del response
        gc.collect()
        left = len(streams), streams.open_responses()

    assert held == (1, 1)
    assert left == (0, 0)


def test_an_asgi_streams_unsubscribe_runs_off_the_event_loop_when_the_broker_says_it_may_wait():
    """A broker with ``blocking_subscriptions`` (the cluster's): the stream ends while its UNSUBSCRIBE still waits."""
    from django.test import AsyncRequestFactory

    from django_sse.core.runtime import get_hub

    entered, gate = threading.Event(), threading.Event()
    returned: list[bool] = []

    async def open_then_close(response) -> float:
        """Read as Django's ASGIHandler does; cancel the reading, as its ``http.disconnect`` does."""
        live = asyncio.Event()

        async def read() -> None:
            body = b""
            async for chunk in response:
                body += chunk
                if b"id: " in body:  # caught up: attached to the hub, subscribed
                    live.set()

        reading = asyncio.create_task(read())
        await asyncio.wait_for(live.wait(), 10)
        began = time.monotonic()
        reading.cancel()
        await asyncio.wait([reading])
        return time.monotonic() - began

    with memory_broker():
        broker = get_hub().broker
        unsubscribe = broker.unsubscribe

        def slow_unsubscribe(channels):  # as a write to a busy Redis connection would wait
            entered.set()
            gate.wait(10)
            returned.append(True)
            return unsubscribe(channels)

        broker.unsubscribe = slow_unsubscribe
        broker.blocking_subscriptions = True  # on this instance only
        try:
            response = ChannelView.as_view()(
                AsyncRequestFactory().get("/events/off-loop/"), channel="off-loop"
            )

            async def main() -> tuple[float, bool]:
                closed_in = await open_then_close(response)
                blocked = await asyncio.to_thread(entered.wait, 10)
                still_waiting = not returned
                gate.set()
                return closed_in, blocked and still_waiting

            closed_in, off_the_loop = asyncio.run(main())
            response.close()
            # Let go, the UNSUBSCRIBE returns in its executor thread (later on a busy machine).
            eventually(lambda: returned, interval=0.01, what="the waiting UNSUBSCRIBE returned")
        finally:
            gate.set()
            broker.unsubscribe = unsubscribe
            del broker.blocking_subscriptions
        listeners = get_hub().listener_count()

    print(
        f"the stream ended in {closed_in * 1000:.1f} ms while UNSUBSCRIBE waited; listeners left: {listeners}"
    )
    assert off_the_loop, "the stream's end waited for UNSUBSCRIBE: it ran on the event loop"
    assert returned == [True]
    assert listeners == 0


def test_an_asgi_stream_opens_and_ends_on_the_loop_when_subscribing_cannot_wait():
    """The memory broker (and one Redis): start() and stop() run on the loop, no thread hop per stream.

    The stream is attached to the hub once its first chunk is out, and has
    left it by the time its reading task is done; a hop to the executor
    would leave it attached a moment longer.
    """
    from django.test import AsyncRequestFactory

    from django_sse.core.runtime import get_hub

    with memory_broker():
        hub = get_hub()
        assert hub.broker.blocking_subscriptions is False
        response = ChannelView.as_view()(
            AsyncRequestFactory().get("/events/on-loop/"), channel="on-loop"
        )
        threads: list[str] = []
        detach = hub.detach

        def detach_here(*args):
            threads.append(threading.current_thread().name)
            return detach(*args)

        hub.detach = detach_here
        try:

            async def main() -> tuple[int, int]:
                chunks = response.__aiter__()
                body = b""
                while b"id: " not in body:  # the opening, then the catch-up: live now
                    body += await asyncio.wait_for(chunks.__anext__(), 10)
                attached = hub.listener_count()
                entered = asyncio.Event()

                async def next_chunk() -> bytes:
                    entered.set()
                    return await chunks.__anext__()  # waits: nothing is published

                reading = asyncio.create_task(next_chunk())
                await entered.wait()  # its first step has run: it waits inside the stream
                assert not reading.done()
                reading.cancel()  # as Django's handler does on http.disconnect
                await asyncio.wait([reading])
                return attached, hub.listener_count()

            attached, left = asyncio.run(main())
            response.close()
        finally:
            del hub.detach

    assert (attached, left) == (1, 0)
    assert threads == [threading.main_thread().name]  # asyncio.run's loop runs in this thread


async def _serve_until_the_first_chunk_then_leave(application, path: str) -> None:
    """One request through Django's ASGI handler: the client leaves once the opening arrived."""
    arrived = asyncio.Event()
    read = []

    async def receive() -> dict:
        if not read:
            read.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await arrived.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            arrived.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    await asyncio.wait_for(application(scope, receive, send), 10)


def test_streams_whose_clients_left_leave_no_object_behind():
    """300 streams through Django's ASGIHandler, each left after its opening: no response, mailbox or task stays alive."""
    import gc
    from collections import Counter

    from django.core.handlers.asgi import ASGIHandler

    from django_sse.core.runtime import get_hub, streams
    from django_sse.views import SseResponse

    application = ASGIHandler()
    count = 300

    registered = len(streams)  # earlier tests may have left some

    async def all_stopped() -> None:
        """Wait until every stream has left the hub and the registry (stop() may be in the executor)."""
        deadline = time.monotonic() + 10
        while get_hub().listener_count() or len(streams) > registered:
            assert time.monotonic() < deadline, (get_hub().listener_count(), len(streams))
            await asyncio.sleep(0.01)

    async def main() -> tuple[int, int]:
        for i in range(20):  # warm-up: imports, caches
            await _serve_until_the_first_chunk_then_leave(application, f"/events/warm-{i}/")
        await all_stopped()
        gc.collect()
        before = len(gc.get_objects())
        for i in range(count):  # half on one channel, half on a channel of their own
            channel = "churn" if i % 2 else f"churn-{i}"
            await _serve_until_the_first_chunk_then_leave(application, f"/events/{channel}/")
        await all_stopped()
        gc.collect()
        return before, len(gc.get_objects())

    def streams_alive() -> Counter:
        """Responses and mailboxes alive in the process (earlier tests may have left some)."""
        gc.collect()
        return Counter(
            type(o).__name__ for o in gc.get_objects() if isinstance(o, (SseResponse, Mailbox))
        )

    left_earlier = streams_alive()
    with memory_broker():
        before, after = asyncio.run(main())
        alive = streams_alive()

    print(f"{count} streams left: {(after - before) / count:.2f} objects per stream remain")
    assert alive == left_earlier, (alive, left_earlier)
    assert after - before < count  # fewer than one object per stream


# --- asend_event ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("", "x", "news"), ValueError, "non-empty str"),
        (("a\nb", "x", "news"), ValueError, None),
        (("tick", object(), "news"), TypeError, None),
        (("tick", "x", "bad channel!"), ValueError, None),
        (("tick", "x" * (1024 * 1024 + 1), "news"), EventTooLarge, "SSE_MAX_EVENT_SIZE"),
    ],
    ids=["empty name", "newline in name", "unencodable data", "bad channel", "too large"],
)
def test_asend_event_raises_what_send_event_raises_before_publishing(args, error, match):
    """Each bad event: asend_event raises the same exception type as send_event, and nothing is published."""
    with memory_broker():
        with pytest.raises(error, match=match) as sync_error:
            django_sse.send_event(*args)
        with pytest.raises(error, match=match) as async_error:
            asyncio.run(django_sse.asend_event(*args))
        from django_sse.core.runtime import get_broker

        history = get_broker().read_history("news", (0, 0), 10)

    assert type(sync_error.value) is type(async_error.value)
    assert history.messages == []  # nothing was published to the channel


def test_asend_event_publishes_on_the_runtimes_executor_not_a_thread_per_call():
    """200 asend_event calls: every one gets its id, and the process holds no thread per call."""
    with memory_broker():
        asyncio.run(django_sse.asend_event("n", "warm-up", "warm-up"))  # the broker, its executor
        before = threading.active_count()

        async def main() -> list[str | None]:
            return list(
                await asyncio.gather(
                    *(django_sse.asend_event("n", str(n), "a") for n in range(200))
                )
            )

        started = time.perf_counter()
        ids = asyncio.run(main())
        elapsed = time.perf_counter() - started
        threads = threading.active_count() - before
        from django_sse.core.runtime import get_broker

        history = get_broker().read_history("a", (0, 0), 500)

    print(
        f"200 asend_event calls (memory broker) in {elapsed * 1000:.1f} ms, {threads} thread(s) added"
    )
    assert len(set(ids)) == 200 and None not in ids
    # Concurrent calls publish in any order (each call's own event is in order with its awaits).
    assert sorted(int(message.data) for message in history.messages) == list(range(200))
    assert threads <= 3  # at most the executor's other threads, however many calls


# --- WSGI and ASGI on one Redis ------------------------------------------------------------

PUBLISHER = """
import sys
import django
django.setup()
from django_sse import send_event
for n in range(int(sys.argv[1])):
    send_event("n", str(n), channel="both")
"""


@pytest.mark.integration
def test_a_publisher_process_reaches_the_clients_of_gunicorn_and_uvicorn_exactly_once_in_order(
    servers,
):
    """One Redis, gunicorn (gevent) and uvicorn, 4 clients on each: 300 events from a third process arrive once each, in order."""
    redis = servers.redis()
    gunicorn = servers.site(redis.url, heartbeat="1", kind="gunicorn")
    uvicorn = servers.site(redis.url, heartbeat="1", kind="uvicorn")
    count = 300
    clients = [connect(server.port, "/events/both/") for server in (gunicorn, uvicorn) * 4]
    try:
        for client in clients:
            wait_position(client)
        env = {**os.environ, **project_env(redis.url), "DJANGO_SETTINGS_MODULE": "tests.settings"}
        subprocess.run(
            [sys.executable, "-c", PUBLISHER, str(count)],
            cwd=REPO_TOP,
            env=env,
            check=True,
            timeout=60,
        )
        received = [
            [event.data for event in client.read_events(count, timeout=30) if event.type == "n"]
            for client in clients
        ]
    finally:
        for client in clients:
            client.close()

    expected = [str(n) for n in range(count)]
    print(f"{len(clients)} clients (half on gunicorn, half on uvicorn), {count} events each")
    for index, got in enumerate(received):
        assert got == expected, f"client {index} ({'gunicorn' if index % 2 == 0 else 'uvicorn'})"


@pytest.mark.integration
def test_under_uvicorn_an_async_iterator_holds_no_thread_and_a_sync_one_holds_one(servers):
    """200 streams each: an async iterator() adds no thread per stream; a sync one adds exactly its own."""
    server = servers.uvicorn(env=project_env(""))
    grown = {}
    for path in ("/async-ticks/?interval=1", "/ticks/?interval=1"):
        baseline = get_stats(server.port)["threads"]
        clients = [SseClient.connect(server.port, path) for _ in range(200)]
        try:
            for client in clients:
                client.read_events(1, timeout=15)
            grown[path] = get_stats(server.port)["threads"] - baseline
        finally:
            for client in clients:
                client.close()
        eventually(lambda: get_stats(server.port)["streams"] == 0, timeout=15)

    print(f"threads added by 200 streams under uvicorn: {grown}")
    assert grown["/async-ticks/?interval=1"] < 10
    assert 200 <= grown["/ticks/?interval=1"] < 210


# --- start-up checks under uvicorn ----------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_an_asgi_server_with_a_bad_setting_exits_at_start_naming_it(servers, server):
    """SSE_HEARTBEAT_INTERVAL = -1: uvicorn and daphne exit before they serve, printing django_sse.E001."""
    with pytest.raises(ServerError) as info:
        getattr(servers, server)(env={"DJANGO_SSE_TEST_BAD_SETTING": "1"})

    text = str(info.value)
    assert "exited" in text
    assert "django_sse.E001" in text and "SSE_HEARTBEAT_INTERVAL is -1" in text


@pytest.mark.integration
def test_the_memory_broker_under_two_uvicorn_workers_warns_w001_in_each(servers):
    """The in-process broker with uvicorn --workers 2: each worker logs django_sse.W001 once, naming SSE_REDIS_URL."""
    server = servers.uvicorn(env=project_env(""), workers=2)
    log = eventually(
        lambda: server.stderr_text(50_000),
        timeout=10,
        until=lambda text: text.count("django_sse.W001") >= 2,
        what="W001 from both workers",
    )

    assert log.count("django_sse.W001") == 2
    assert "SSE_REDIS_URL" in log


#: The test project with daphne first in INSTALLED_APPS: ``manage.py runserver`` serves ASGI.
DAPHNE_RUNSERVER = {
    "INSTALLED_APPS": ["daphne", *settings.INSTALLED_APPS],
    "ASGI_APPLICATION": "tests.asgi.application",
}


@pytest.mark.integration
def test_runserver_with_daphne_streams_the_memory_brokers_events(servers):
    """Development: runserver with daphne installed, the in-process broker: events sent in the server reach a stream."""
    server = servers.runserver(env=project_env("", settings=DAPHNE_RUNSERVER))
    client = SseClient.connect(server.port, "/events/dev/")
    try:
        for n in range(3):
            _post_publish(server.port, "dev", str(n))
        events = client.read_events(3, timeout=15)
    finally:
        client.close()

    assert [event.data for event in events] == ["0", "1", "2"]
    log = server.stderr_text(20_000)
    assert "ASGI/Daphne" in log  # daphne's runserver, not Django's WSGI one
    assert "System check identified no issues" in log


@pytest.mark.integration
def test_runserver_with_daphne_and_a_bad_setting_names_it(servers):
    """runserver with daphne runs the system checks: a bad setting stops it with django_sse.E001."""
    env = project_env("", settings=DAPHNE_RUNSERVER, DJANGO_SSE_TEST_BAD_SETTING="1")
    with pytest.raises(ServerError) as info:
        servers.runserver(env=env)

    assert "django_sse.E001" in str(info.value)


def _post_publish(port: int, channel: str, data: str) -> None:
    """POST /publish/ of the test project: ``send_event`` inside the server process."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            "/publish/",
            body=f"event=n&data={data}&channel={channel}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        connection.close()


# --- the samples of docs/guides/asgi.rst -------------------------------------------------


@pytest.fixture
def modules():
    loaded = SampleModules("asgi.rst")
    yield loaded
    loaded.forget()


def test_asgi_py_sample_is_djangos_own_handler(modules):
    """The page's asgi.py gives Django's ASGIHandler, with nothing of django-sse around it."""
    from django.core.handlers.asgi import ASGIHandler

    module = modules.load("mysite.asgi", ASGI_PY.code)

    assert type(module.application) is ASGIHandler


class _SampleCommand(HttpServer):
    """A server started with one of the page's command lines, on tests.asgi and a free port."""

    def __init__(self, line: str, **kwargs) -> None:
        super().__init__(**kwargs)
        line = line.replace("mysite.asgi", "tests.asgi").replace("8000", str(self.port))
        program, *args = shlex.split(line)
        self.name = program
        if program == "gunicorn":  # not the repository's gunicorn.conf.py, nor ~/.gunicorn
            control = ["--no-control-socket"] if _gunicorn_has_control_socket() else []
            args = ["-c", os.devnull, *control, *args]
        self.words = [sys.executable, "-m", program, *args]

    def command(self) -> list[str]:
        return self.words


@pytest.mark.integration
@pytest.mark.parametrize("server", ["uvicorn", "daphne", "gunicorn"])
def test_serving_commands_sample_streams_and_ends_streams_on_term(tmp_path, server):
    """Each command of the page serves a stream and, on TERM, ends it with a retry hint and the last chunk."""
    [line] = [line[2:] for line in COMMANDS.code.splitlines() if line.startswith(f"$ {server} ")]
    process = _SampleCommand(line, env=project_env(""), log_dir=tmp_path).start()
    try:
        client = SseClient.connect(process.port, "/async-ticks/?interval=0.2")
        client.read_events(2, timeout=15)
        process.send_signal(signal.SIGTERM)
        body = client.read_to_end(timeout=15)
        client.close()
        process.process.wait(15)
    finally:
        process.stop()

    print(f"{server}: the stream's last bytes after TERM: {body[-30:]!r}")
    assert client.status == 200
    assert client.completed and spread_retry(body), body[-60:]


def test_async_clock_sample_streams_under_asgi_and_is_refused_under_wsgi(modules):
    """The async clock sends a time each second to an ASGI request; a WSGI request gets ImproperlyConfigured."""
    from django.test import AsyncRequestFactory

    from django_sse.core.runtime import streams

    views = modules.load("myapp.views", CLOCK.code)
    view = views.AsyncClockView.as_view()

    async def read(response) -> list[bytes]:
        chunks = []
        content = aiter(response)
        async for chunk in content:
            chunks.append(chunk)
            if len(chunks) == 3:
                break
        await content.aclose()
        return chunks

    with memory_broker():
        response = view(AsyncRequestFactory().get("/clock/"))
        chunks = asyncio.run(asyncio.wait_for(read(response), 10))
        response.close()
        with pytest.raises(ImproperlyConfigured, match="AsyncClockView"):
            view(RequestFactory().get("/clock/"))
        left = len(streams), streams.open_responses()

    assert chunks[0] == b"retry: 2000\n\n:\n\n"
    assert all(chunk.startswith(b"event: time\ndata: 20") for chunk in chunks[1:])
    assert left == (0, 0)


def test_notify_sample_publishes_with_asend_event(modules):
    """``await order_shipped(7)`` publishes ``shipped`` {"order": 7} to "orders" and returns its id."""
    from django_sse.core.runtime import get_broker

    notify = modules.load("myapp.notify", NOTIFY.code)
    with memory_broker():
        event_id = asyncio.run(notify.order_shipped(7))
        [message] = get_broker().read_history("orders", (0, 0), 10).messages

    assert event_id is not None
    assert (message.event, message.data) == ("shipped", '{"order":7}')


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/asgi.rst was read by a test that passed."""
    SAMPLES.check(request)
