"""Every code sample of README.rst, exercised: the README may only show what works.

Samples are read from README.rst itself (``.. code-block::`` directives) and
looked up by a marker they contain, so that editing a sample changes what
runs here. ``test_every_sample_is_exercised`` fails when a sample is added
without a test. The settings table is checked against ``conf.DEFAULTS``.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import runpy
import shlex
import subprocess
import sys
import textwrap
import threading
import time
import types
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from django_sse import checks
from django_sse.conf import DEFAULTS, sse_settings
from django_sse.registry import streams
from tests.browser.fixtures import WAIT, browser, example  # noqa: F401  (fixtures)
from tests.servers import REPO_TOP, GunicornServer
from tests.sse_parser import SseParser
from tests.sseclient import SseClient

README = REPO_TOP / "README.rst"
TIMEOUT = 10.0  # seconds any awaited chunk or event may take


# --- the samples -----------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int


def read_blocks(text: str) -> list[Block]:
    """Return the ``.. code-block::`` directives of ``text``, dedented, in order."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)\.\. code-block:: *(\S+)\s*$", line)
        if not match:
            continue
        indent = len(match.group(1))
        body = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(match.group(2), code, number + 1))
    return blocks


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))
_exercised: set[int] = set()


def sample(language: str, marker: str) -> str:
    """Return the code of the one sample in ``language`` that contains ``marker``."""
    found = [
        i for i, block in enumerate(BLOCKS) if block.language == language and marker in block.code
    ]
    assert len(found) == 1, f"README.rst has {len(found)} {language} samples containing {marker!r}"
    _exercised.add(found[0])
    return BLOCKS[found[0]].code


PIP_INSTALL = sample("console", "pip install")
CLOCK_VIEW = sample("python", "class ClockView")
QUICK_URLS = sample("python", "# myapp/urls.py")
QUICK_SEND = sample("python", "# anywhere:")
PAGE_SCRIPT = sample("html", "new EventSource")
GUNICORN_COMMAND = sample("console", "gunicorn -c gunicorn.conf.py")
COUNTDOWN_VIEW = sample("python", "class CountdownView")
USER_EVENTS_VIEW = sample("python", "class UserEventsView")
SEND_EVENT_COMMAND = sample("console", "manage.py send_event")
REDIS_CLI = sample("console", "redis-cli --eval")
FOREIGN_PUBLISHER = sample("python", "# publisher.py")
RESET_SCRIPT = sample("javascript", "stream-reset")
SETTINGS = sample("python", "SSE_EPHEMERAL_CHANNELS")
GUNICORN_CONF = sample("python", "def post_worker_init")
NGINX = sample("nginx", "proxy_buffering off")
CHANNEL_MANAGER = sample("python", "class UserChannels")
LEGACY_SETTINGS = sample("python", "REDIS_SSEQUEUE_CONNECTION_SETTINGS")


def commands(console: str) -> list[tuple[list[str], list[str]]]:
    """Return each ``$ command`` of a console sample, split, with the output lines shown after it."""
    found: list[tuple[list[str], list[str]]] = []
    for line in console.splitlines():
        if line.startswith("$ "):
            found.append((shlex.split(line[2:]), []))
        elif line.strip():
            found[-1][1].append(line)
    return found


# --- helpers ---------------------------------------------------------------------


@pytest.fixture
def modules():
    """Load README samples as modules (``modules.load("myapp.views", code)``); forgotten at the end."""
    loaded: list[str] = []

    def load(name: str, code: str) -> types.ModuleType:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            package = ".".join(parts[:depth])
            if package not in sys.modules:
                module = types.ModuleType(package)
                module.__path__ = []
                sys.modules[package] = module
                loaded.append(package)
        module = types.ModuleType(name)
        module.__package__ = ".".join(parts[:-1])
        module.__file__ = f"<README.rst sample {name}>"
        sys.modules[name] = module
        loaded.append(name)
        exec(compile(code, module.__file__, "exec"), module.__dict__)
        return module

    yield SimpleNamespace(load=load)
    for name in reversed(loaded):
        sys.modules.pop(name, None)


class Events:
    """Read the events of a streaming response, each wait bounded by a timeout."""

    def __init__(self, response) -> None:
        assert response.status_code == 200, response.content
        self.response = response
        self.parser = SseParser()
        self.events: list = []
        self.raw = b""
        self.ended = False
        self._chunks = iter(response.streaming_content)

    def _next_chunk(self, timeout: float) -> bytes | None:
        outcome: list = []

        def read() -> None:
            try:
                outcome.append(next(self._chunks, None))
            except BaseException as exc:  # handed to the test's thread below
                outcome.append(exc)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise AssertionError(f"No chunk within {timeout} s; received {self.raw[-300:]!r}")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def read(self, timeout: float = TIMEOUT) -> bytes | None:
        """Read one chunk; return it, or None at the end of the response."""
        chunk = self._next_chunk(timeout)
        if chunk is None:
            self.ended = True
            return None
        self.raw += chunk
        self.events += self.parser.feed(chunk)
        return chunk

    def until(self, predicate, timeout: float = TIMEOUT) -> list:
        """Read until ``predicate(events)`` holds; return the events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.read(remaining) is None:
                raise AssertionError(f"Not received in time; got {self.events!r}")
        return self.events

    def to_end(self, timeout: float = TIMEOUT) -> list:
        for _ in range(1000):
            if self.read(timeout) is None:
                return self.events
        raise AssertionError("The response did not end.")

    def close(self) -> None:
        self.response.close()


@pytest.fixture
def streams_opened():
    """Open streams with ``streams_opened(response)``; every one is closed at the end."""
    opened: list[Events] = []

    def open_(response) -> Events:
        events = Events(response)
        opened.append(events)
        events.read()  # the opening chunk: the stream is attached to its channels
        return events

    yield open_
    for events in opened:
        events.close()


def named(name: str):
    return lambda events: any(event.type == name for event in events)


def a_user(pk: int, **attributes) -> SimpleNamespace:
    """A logged-in user as far as the samples look: pk, is_authenticated, is_anonymous, is_staff."""
    return SimpleNamespace(
        **{
            "pk": pk,
            "is_authenticated": True,
            "is_anonymous": False,
            "is_staff": False,
            **attributes,
        }
    )


def wait_subscribed(redis_server, channel: str) -> None:
    """Wait until this process subscribes ``sse:<channel>`` in Redis (its hub's one connection)."""
    key = f"sse:{channel}"
    with redis_server.client() as client:
        for _ in range(200):
            if dict(client.pubsub_numsub(key))[key.encode()] >= 1:
                return
            time.sleep(0.05)
    raise AssertionError(f"{key} was never subscribed")


@pytest.fixture(autouse=True)
def no_stream_left_open():
    """After each test, every stream it opened in this process has ended (other tests count them)."""
    yield
    for _ in range(100):
        if not len(streams):
            return
        time.sleep(0.05)
    raise AssertionError(f"{len(streams)} stream(s) left open in this process")


# --- the README as a whole ----------------------------------------------------------


def test_readme_starts_with_the_two_set_up_commands():
    """The first literal block is ./scripts/example then ./scripts/test, both executable scripts."""
    text = README.read_text(encoding="utf-8")
    first = re.search(r"::\n\n((?:    .*\n)+)", text).group(1)
    assert [line.split()[0] for line in first.splitlines()] == [
        "./scripts/example",
        "./scripts/test",
    ]
    assert text.index("./scripts/example") < text.index(".. code-block::")
    for script in ("scripts/example", "scripts/test"):
        assert (REPO_TOP / script).stat().st_mode & 0o111


@pytest.mark.parametrize(
    "index", [i for i, block in enumerate(BLOCKS) if block.language == "python"]
)
def test_every_python_sample_compiles(index):
    """Each Python sample is valid Python."""
    block = BLOCKS[index]
    compile(block.code, f"README.rst line {block.line}", "exec")


def test_every_sample_is_exercised():
    """Every code-block in README.rst is one of the samples this module runs."""
    missing = [f"line {b.line} ({b.language})" for i, b in enumerate(BLOCKS) if i not in _exercised]
    assert not missing, f"README samples without a test: {missing}"


def test_settings_table_lists_every_setting_with_its_default():
    """The Settings table has one row per setting of conf.DEFAULTS, each with the real default."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("   * - Setting") : text.index("For example:")]
    rows = re.findall(r"^   \* - ``(\w+)``\n     - ``(.+?)``\n", table, re.MULTILINE)
    documented = {name: ast.literal_eval(default) for name, default in rows}
    assert len(rows) == len(documented)  # no setting twice
    assert documented == DEFAULTS


# --- quick start ----------------------------------------------------------------------


def test_pip_install_names_this_package_and_its_redis_extra():
    """The package and extra that the install command names are the ones setup.cfg defines."""
    [(argv, _)] = commands(PIP_INSTALL)
    assert argv[:2] == ["pip", "install"]
    name, extra = re.fullmatch(r"([\w-]+)\[(\w+)\]", argv[2]).groups()
    setup = configparser.ConfigParser()
    setup.read(REPO_TOP / "setup.cfg")
    assert name == setup["metadata"]["name"]
    assert extra in setup["options.extras_require"]
    assert "redis" in setup["options.extras_require"][extra]


def test_quick_start_serves_the_clock_and_the_channels(modules, settings, client, streams_opened):
    """The quick start's URLconf serves ClockView's ticks, and send_event reaches both channel streams."""
    modules.load("myapp.views", CLOCK_VIEW)
    modules.load("myapp.urls", QUICK_URLS)
    settings.ROOT_URLCONF = "myapp.urls"

    clock = streams_opened(client.get("/clock/"))
    [tick] = clock.until(named("tick"))
    assert float(tick.data) == pytest.approx(time.time(), abs=60)

    orders = streams_opened(client.get("/orders/events/"))
    dashboard = streams_opened(client.get("/dashboard/events/"))
    exec(compile(QUICK_SEND, "<README.rst send_event>", "exec"), {})

    for stream in (orders, dashboard):
        [event] = [e for e in stream.until(named("order-shipped")) if e.type == "order-shipped"]
        assert json.loads(event.data) == {"id": 42, "carrier": "DHL"}


@pytest.mark.browser
@pytest.mark.integration
def test_quick_start_page_script_shows_each_tick(example, browser):  # noqa: F811
    """The page script, pointed at the example's clock stream, puts each tick's data in the title."""
    script = re.search(r"<script>(.*)</script>", PAGE_SCRIPT, re.DOTALL).group(1)
    driver = browser()
    driver.get(example.url + "/")
    driver.execute_script(script.replace('"/clock/"', '"/clock/events/"'))

    from selenium.webdriver.support.wait import WebDriverWait

    title = WebDriverWait(driver, WAIT).until(
        lambda d: d.title if d.title.startswith("{") else None
    )
    assert set(json.loads(title)) == {"now", "tick"}


@pytest.mark.integration
def test_gunicorn_command_serves_streams_without_blocking_the_worker(tmp_path):
    """`gunicorn -c gunicorn.conf.py PROJECT.wsgi` runs gevent: a blocked stream leaves the worker free."""
    [(argv, _)] = commands(GUNICORN_COMMAND)
    assert argv[:3] == ["gunicorn", "-c", "gunicorn.conf.py"]

    class ReadmeGunicorn(GunicornServer):
        def command(self):
            app = "tests.wsgi:application" if argv[3] == "mysite.wsgi" else argv[3]
            return [
                sys.executable,
                "-m",
                "gunicorn",
                *argv[1:3],
                app,
                "--bind",
                f"127.0.0.1:{self.port}",
            ]

    server = ReadmeGunicorn(log_dir=tmp_path).start()
    try:
        with SseClient.connect(server.port, "/blocked/") as blocked:
            [hello] = blocked.read_events(1)
            assert hello.data == "blocked next"
            with SseClient.connect(server.port, "/ticks/?n=3&interval=0.05") as ticks:
                assert [event.data for event in ticks.read_events(3)] == ["0", "1", "2"]
        assert "Using worker: gevent" in server.stderr_text()
    finally:
        server.stop()


# --- BaseSseView -----------------------------------------------------------------------


def test_countdown_sample_refuses_anonymous_users_and_resumes_from_last_event_id(modules):
    """CountdownView: 403 without a user; with one, retry 5000, counts down from Last-Event-ID to 0, ends."""
    view = modules.load("myapp.views", COUNTDOWN_VIEW).CountdownView.as_view()
    factory = RequestFactory()

    anonymous = factory.get("/countdown/")
    anonymous.user = AnonymousUser()
    refused = view(anonymous)
    assert (refused.status_code, refused.content) == (403, b"Log in first.")

    request = factory.get("/countdown/", HTTP_LAST_EVENT_ID="3")
    request.user = a_user(1)
    stream = Events(view(request))
    events = stream.to_end()
    assert stream.raw.startswith(b"retry: 5000\n")
    assert [(e.type, json.loads(e.data)["n"], e.last_event_id) for e in events] == [
        ("count", 2, "2"),
        ("count", 1, "1"),
        ("count", 0, "0"),
    ]
    assert view.view_class.heartbeat_interval == 20


# --- RedisQueueView ---------------------------------------------------------------------


def test_user_events_sample_streams_only_the_users_own_channel(modules):
    """UserEventsView: a user reads user-<own pk> and gets its events; another pk or anonymous gets 403."""
    view = modules.load("notifications.views", USER_EVENTS_VIEW).UserEventsView.as_view()
    factory = RequestFactory()

    def get(user, user_id):
        request = factory.get(f"/users/{user_id}/events/")
        request.user = user
        return view(request, user_id=user_id)

    assert get(a_user(7), 8).status_code == 403
    assert get(AnonymousUser(), 7).status_code == 403
    stream = Events(get(a_user(7), 7))
    try:
        stream.read()  # opening: attached to user-7
        from django_sse import send_event

        send_event("notification", {"text": "Your parcel left"}, channel="user-7")
        send_event("notification", {"text": "not yours"}, channel="user-8")
        send_event("done", "", channel="user-7")
        events = stream.until(named("done"))
        assert [json.loads(e.data)["text"] for e in events if e.type == "notification"] == [
            "Your parcel left"
        ]
    finally:
        stream.close()


# --- publishing -------------------------------------------------------------------------


@pytest.fixture
def orders_on_redis(settings, redis_url, redis_server, streams_opened, modules, client):
    """A stream of the channel "orders" on Redis, subscribed; the broker of this process uses Redis."""
    settings.SSE_REDIS_URL = redis_url
    modules.load("myapp.views", CLOCK_VIEW)
    modules.load("myapp.urls", QUICK_URLS)
    settings.ROOT_URLCONF = "myapp.urls"
    stream = streams_opened(client.get("/orders/events/"))
    wait_subscribed(redis_server, "orders")
    return stream


@pytest.mark.integration
def test_send_event_command_sample_publishes_json_to_a_stream(orders_on_redis, redis_server):
    """`manage.py send_event orders order-shipped '{"id": 42}' --json` prints the id the stream receives."""
    [(argv, output)] = commands(SEND_EVENT_COMMAND)
    assert argv[:3] == ["python", "manage.py", "send_event"]
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(*argv[2:], stdout=out)
    event_id = out.getvalue().strip()
    assert re.fullmatch(r"\d+-\d+", event_id) and re.fullmatch(r"\d+-\d+", output[0])

    [event] = [
        e for e in orders_on_redis.until(named("order-shipped")) if e.type == "order-shipped"
    ]
    assert (json.loads(event.data), event.last_event_id) == ({"id": 42}, event_id)


@pytest.mark.integration
def test_redis_cli_sample_publishes_with_history(orders_on_redis, redis_server):
    """The redis-cli call of publish.lua records the event in sse:orders and a stream receives it with that id."""
    [(argv, output)] = commands(REDIS_CLI)
    argv = [argv[0], "-p", str(redis_server.port), *argv[1:]]
    result = subprocess.run(argv, cwd=REPO_TOP, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip().strip('"')
    assert re.fullmatch(r"\d+-\d+", event_id) and re.fullmatch(r'"\d+-\d+"', output[0])

    [event] = [
        e for e in orders_on_redis.until(named("order-shipped")) if e.type == "order-shipped"
    ]
    assert (json.loads(event.data), event.last_event_id) == ({"id": 42}, event_id)
    with redis_server.client() as redis:
        [(entry_id, fields)] = redis.xrange("sse:orders")
        assert redis.pttl("sse:orders") > 86_000_000
    assert (entry_id.decode(), fields) == (
        event_id,
        {b"event": b"order-shipped", b"data": b'{"id": 42}'},
    )


@pytest.mark.integration
def test_foreign_publisher_sample_reaches_a_stream_with_and_without_history(
    orders_on_redis, redis_url
):
    """publisher.py publishes through publish.lua (an id) and plain PUBLISH (no id); the stream gets both."""
    code = FOREIGN_PUBLISHER.replace("redis://localhost:6379/0", redis_url)
    namespace: dict = {}
    exec(compile(code, "<README.rst publisher.py>", "exec"), namespace)
    namespace["client"].close()

    events = orders_on_redis.until(named("typing"))
    shipped = [e for e in events if e.type == "order-shipped"]
    typing = [e for e in events if e.type == "typing"]
    assert [(json.loads(e.data), e.last_event_id) for e in shipped] == [
        ({"id": 42}, namespace["event_id"].decode())
    ]
    # Without history: no id field, so the client's last id stays the shipped event's.
    assert [(json.loads(e.data), e.last_event_id) for e in typing] == [
        ({"user": "ann"}, namespace["event_id"].decode())
    ]
    assert b"id: " not in orders_on_redis.raw.split(b"event: typing")[1]


# --- ids and stream-reset ---------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.integration
def test_stream_reset_sample_reloads_on_reset_and_handles_events(example, browser):  # noqa: F811
    """In Chromium, the sample's stream-reset listener runs for a lost position, then events arrive."""
    driver = browser()
    driver.get(example.url + "/")
    driver.execute_script(
        "window.calls = [];"
        "window.showShipped = (data) => calls.push(['shipped', data]);"
        "window.reloadOrders = (channels) => calls.push(['reload', channels]);"
    )
    # An id this channel never issued: the server cannot resume from it.
    driver.execute_script(
        RESET_SCRIPT.replace('"/orders/events/"', '"/feed/events/?lastEventId=1-0"')
    )

    from selenium.webdriver.support.wait import WebDriverWait

    wait = WebDriverWait(driver, WAIT, poll_frequency=0.1)
    wait.until(lambda d: d.execute_script("return calls.length") >= 1)
    wait.until(lambda _: example.subscribers("feed") >= 1)
    example.manage("send_event", "feed", "order-shipped", '{"id": 42}', "--json")
    wait.until(lambda d: d.execute_script("return calls.length") >= 2)
    assert driver.execute_script("return calls") == [["reload", ["feed"]], ["shipped", {"id": 42}]]


# --- settings and deployment ------------------------------------------------------------


def test_settings_sample_passes_the_checks_and_means_what_it_says(settings):
    """The settings sample installs the app, selects Redis, makes typing-* ephemeral; no check fails."""
    namespace: dict = {}
    exec(compile(SETTINGS, "<README.rst settings.py>", "exec"), namespace)
    assert "django_sse" in namespace["INSTALLED_APPS"]
    for name, value in namespace.items():
        if name.startswith("SSE_"):
            setattr(settings, name, value)

    assert [message for check in checks.ALL_CHECKS for message in check()] == []
    assert sse_settings.broker_name == "redis"
    assert not sse_settings.history_enabled("typing-ann")
    assert sse_settings.history_enabled("orders")
    assert sse_settings.SSE_MAX_LIFETIME == 3600


def test_gunicorn_conf_sample_matches_the_repository_file_and_its_hook_works(settings):
    """The sample's values are gunicorn.conf.py's; its hook fails on a bad setting and ends streams on stop."""
    shown: dict = {}
    exec(compile(GUNICORN_CONF, "<README.rst gunicorn.conf.py>", "exec"), shown)
    actual = runpy.run_path(str(REPO_TOP / "gunicorn.conf.py"))
    for name in ("worker_class", "worker_connections", "graceful_timeout"):
        assert shown[name] == actual[name], name

    settings.SSE_RETRY = -1
    with pytest.raises(ImproperlyConfigured, match="SSE_RETRY"):
        shown["post_worker_init"](SimpleNamespace(cfg=SimpleNamespace(workers=1), alive=True))
    settings.SSE_RETRY = 2000

    worker = SimpleNamespace(cfg=SimpleNamespace(workers=1), alive=True)
    try:
        shown["post_worker_init"](worker)
        assert not streams.closing
        worker.alive = False  # what gunicorn does on TERM
        for _ in range(100):
            if streams.closing:
                break
            time.sleep(0.05)
        assert streams.closing
    finally:
        worker.alive = False
        time.sleep(0.3)  # the watcher polls every 0.2 s
        streams.closing = False  # this process goes on serving the other tests


def test_nginx_sample_turns_buffering_off_and_outlasts_the_heartbeat(client):
    """The nginx location streams unbuffered over HTTP/1.1 with a read timeout above the heartbeat."""
    directives = {}
    for line in NGINX.splitlines():
        line = line.split("#")[0].strip().rstrip(";")
        if line and not line.endswith(("{", "}")):
            name, _, value = line.partition(" ")
            directives.setdefault(name, []).append(value.strip())
    assert directives["proxy_buffering"] == ["off"]
    assert directives["proxy_http_version"] == ["1.1"]
    assert 'Connection ""' in directives["proxy_set_header"]
    timeout = directives["proxy_read_timeout"][0]
    seconds = int(timeout[:-1]) * {"s": 1, "m": 60, "h": 3600}[timeout[-1]]
    assert seconds > 4 * DEFAULTS["SSE_HEARTBEAT_INTERVAL"]


def test_stream_responses_carry_x_accel_buffering_no(client):
    """What the nginx section says of every stream response: X-Accel-Buffering: no, no-cache."""
    response = client.get("/ticks/?n=1")
    assert response["X-Accel-Buffering"] == "no"
    assert response["Cache-Control"] == "no-cache"
    Events(response).to_end()


# --- security ---------------------------------------------------------------------------


def test_channel_manager_sample_gives_each_user_their_own_channel(modules, settings):
    """With the sample as SSE_CHANNEL_MANAGER, user-<id> is readable by that user alone."""
    modules.load("myproject.channels", CHANNEL_MANAGER)
    settings.SSE_CHANNEL_MANAGER = "myproject.channels.UserChannels"
    assert [message for message in checks.check_channel_manager()] == []
    from django_sse.redisqueue import RedisQueueView

    factory = RequestFactory()

    def open_stream(user, channel):
        request = factory.get("/notifications/")
        request.user = user
        if channel == "me":  # path("notifications/", RedisQueueView.as_view(), {"channel": "me"})
            response = RedisQueueView.as_view()(request, channel="me")
        else:
            response = RedisQueueView.as_view(redis_channel=channel)(request)
        if response.status_code == 200:
            Events(response).read()  # the opening chunk, as a server would send it
        response.close()
        return response.status_code

    assert open_stream(AnonymousUser(), "user-3") == 403
    assert open_stream(a_user(4), "user-3") == 403
    assert open_stream(a_user(3), "user-3") == 200
    assert open_stream(a_user(3), "me") == 200  # the manager picks user-3
    assert open_stream(AnonymousUser(), "me") == 403  # user-anonymous: nobody's
    assert open_stream(AnonymousUser(), "orders") == 200  # other channels stay public
    manager = sys.modules["myproject.channels"].UserChannels()
    request = factory.get("/notifications/")
    request.user = a_user(3)
    assert manager.get_channels_for_request(request, {"channel": "me"}) == ["user-3"]
    assert manager.get_channels_for_request(request, {"channel": "orders"}) is None


# --- django-sse 0.x ---------------------------------------------------------------------


def test_legacy_settings_sample_still_configures_redis(settings):
    """REDIS_SSEQUEUE_CONNECTION_SETTINGS from 0.x becomes the Redis URL, and passes the checks."""
    namespace: dict = {}
    exec(compile(LEGACY_SETTINGS, "<README.rst legacy settings>", "exec"), namespace)
    settings.REDIS_SSEQUEUE_CONNECTION_SETTINGS = namespace["REDIS_SSEQUEUE_CONNECTION_SETTINGS"]
    assert sse_settings.redis_url == "redis://localhost:6379/0"
    assert sse_settings.broker_name == "redis"
    assert [message for check in checks.ALL_CHECKS for message in check()] == []
