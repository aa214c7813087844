"""Every code sample of README.rst and of the docs, exercised: they may only show what works.

Samples are read from README.rst and the pages under docs/ themselves
(``.. code-block::`` directives) and looked up by a marker they contain, so
that editing a sample changes what runs here (a page whose samples another
module exercises is listed in ``PAGES_TESTED_ELSEWHERE``). A sample counts as exercised once a test that read it (its
``.code``) has passed; ``test_every_sample_is_exercised``, the last test,
fails for any sample that no passing test read (``tests/readme_samples.py``).
The settings table is checked against ``conf.DEFAULTS``, the supported
versions against setup.cfg and scripts/test.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import gc
import inspect
import json
import os
import re
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import xml.etree.ElementTree as ElementTree
from importlib import resources
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from packaging.specifiers import SpecifierSet

from django_sse import checks, send_event
from django_sse.conf import DEFAULTS, sse_settings
from django_sse.core.runtime import streams
from django_sse.eventstream import SseParser
from django_sse.redisqueue import RedisQueueView
from django_sse.testing import close_response, memory_broker
from tests.browser.fixtures import WAIT, browser, example, example_kind  # noqa: F401  (fixtures)
from tests.support.django_runner import run_django_tests
from tests.support.readme_samples import SampleModules, Samples, read_blocks, track, write_sample
from tests.support.servers import REPO_TOP, GunicornServer, HttpServer
from tests.support.sse import SseClient, spread_retry

README = REPO_TOP / "README.rst"
DOCS = REPO_TOP / "docs"
# Pages whose samples a module of their own exercises.
PAGES_TESTED_ELSEWHERE = {
    DOCS / "migrating" / "django-eventstream.rst": "test_docs_eventstream",
    DOCS / "guides" / "presence.rst": "test_docs_presence",
    DOCS / "guides" / "operations.rst": "test_metrics",
    DOCS / "guides" / "redis-security.rst": "test_redis_security",
    DOCS / "guides" / "redis-cluster.rst": "test_redis_cluster",
    DOCS / "guides" / "redis-sentinel.rst": "test_redis_sentinel",
    DOCS / "guides" / "asgi.rst": "test_asgi",
}
PAGES = sorted(
    page
    for page in DOCS.rglob("*.rst")
    if "_build" not in page.parts and page not in PAGES_TESTED_ELSEWHERE
)
SETTINGS_PAGE = DOCS / "reference" / "settings.rst"
TIMEOUT = 10.0  # seconds any awaited chunk or event may take


# --- the samples -----------------------------------------------------------------

SAMPLES = Samples(README, *PAGES)
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

PIP_INSTALL = SAMPLES.find("console", 'pip install "django-sse[redis,gunicorn]"')
QUICK_SETTINGS = SAMPLES.find("python", "# mysite/settings.py (at the end")
WORKER_COMMAND = SAMPLES.find("console", "-k django_sse.worker.GeventWorker")
CLOCK_VIEW = SAMPLES.find("python", "class ClockView")
QUICK_URLS = SAMPLES.find("python", "# myapp/urls.py")
QUICK_SEND = SAMPLES.find("python", "# anywhere:")
PROJECT_URLS = SAMPLES.find("python", "# mysite/urls.py")
QUICK_TEMPLATE = SAMPLES.find("html+django", "{# myapp/templates/myapp/orders.html #}")
QUICK_PREPARE = SAMPLES.find("console", "manage.py collectstatic")
QUICK_SEND_COMMAND = SAMPLES.find("console", """send_event orders order-shipped '{"id": 7""")
# The quick start's and the deployment section's command: the same, twice.
GUNICORN_COMMAND = SAMPLES.find("console", "$ gunicorn -k gevent", copies=2)
COUNTDOWN_VIEW = SAMPLES.find("python", "class CountdownView")
USER_EVENTS_VIEW = SAMPLES.find("python", "class UserEventsView")
SEND_EVENT_COMMAND = SAMPLES.find("console", """send_event orders order-shipped '{"id": 42}'""")
REDIS_CLI = SAMPLES.find("console", "redis-cli --eval")
FOREIGN_PUBLISHER = SAMPLES.find("python", "# publisher.py")
RESET_SCRIPT = SAMPLES.find("javascript", "stream-reset")
SETTINGS = SAMPLES.find("python", "SSE_EPHEMERAL_CHANNELS")
GUNICORN_CONF = SAMPLES.find("python", "# gunicorn.conf.py")
DOCKERFILE = SAMPLES.find("dockerfile", "CMD [")
SYSTEMD_UNIT = SAMPLES.find("ini", "[Service]")
PROCFILE = SAMPLES.find("text", "web: gunicorn")
PYWSGI_PROGRAM = SAMPLES.find("python", "stop_gracefully")
NGINX = SAMPLES.find("nginx", "proxy_buffering off")
CHANNEL_MANAGER = SAMPLES.find("python", "class UserChannels")
LEGACY_SETTINGS = SAMPLES.find("python", "REDIS_SSEQUEUE_CONNECTION_SETTINGS")
TESTING_SAMPLE = SAMPLES.find("python", "# tests/test_news.py")
TESTCASE_SAMPLE = SAMPLES.find("python", "class ClubStreamTests(TestCase)")
INITIAL_STATE_VIEW = SAMPLES.find("python", "class OrdersView")
CLIENT_SCRIPT = SAMPLES.find("html+django", "const stream = connect(")
STATIC_SETTINGS = SAMPLES.find("python", "# right after SecurityMiddleware")
STATIC_NGINX = SAMPLES.find("nginx", "alias ")
STREAM_TRANSCRIPT = SAMPLES.find("text", "X-Accel-Buffering: no")


def all_pages_text() -> str:
    """README.rst and every page of docs/, one after the other (for facts stated in prose)."""
    return "\n".join(page.read_text(encoding="utf-8") for page in (README, *PAGES))


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


def render(template_code: str) -> str:
    """Render a template sample with Django's engine (``{% static %}`` gives this STATIC_URL's URL)."""
    from django.template import Context, Engine

    engine = Engine(libraries={"static": "django.templatetags.static"})
    return engine.from_string(template_code).render(Context())


def module_script(template_code: str) -> str:
    """The code of the ``<script type="module">`` of a template sample, rendered."""
    return re.search(r'<script type="module">(.*?)</script>', render(template_code), re.DOTALL)[1]


def gunicorn_settings(argv: list[str]):
    """Parse a gunicorn command line with gunicorn's own parser; return its Config and the app names."""
    from gunicorn.config import Config

    config = Config()
    args = config.parser().parse_args(argv)
    for name, value in vars(args).items():
        if value is not None and name != "args":
            config.set(name.lower(), value)
    return config, args.args


def runnable_gunicorn(argv: list[str], port: int, workers: int | None = None) -> list[str]:
    """A README gunicorn command line, run on the test project: this venv, tests.wsgi, a free loopback port."""
    args = list(argv[1:])
    assert args.count("mysite.wsgi") == 1, argv
    args[args.index("mysite.wsgi")] = "tests.wsgi:application"
    if "--bind" in args:
        args[args.index("--bind") + 1] = f"127.0.0.1:{port}"
    else:
        args += ["--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        args[args.index("--workers") + 1] = str(workers)
    if "-c" not in args:
        # As in a project without one: not the gunicorn.conf.py that gunicorn would
        # find in this repository's top directory, where the servers start.
        args += ["-c", os.devnull]
    import gunicorn.config

    if hasattr(gunicorn.config, "ControlSocketDisable"):
        args.append("--no-control-socket")  # gunicorn >= 25.1: one per user otherwise
    return [sys.executable, "-m", "gunicorn", *args]


@contextlib.contextmanager
def serving_readme_command(argv: list[str], log_dir, worker: str):
    """Run a README gunicorn command; once the block is done, its log names ``worker``, no warning."""
    server = ReadmeGunicorn(lambda port: runnable_gunicorn(argv, port), log_dir=log_dir)
    server.start()
    try:
        yield server
        log = server.stderr_text(100_000)
        assert f"Using worker: {worker}" in log
        assert warnings_logged(server) == [], log
    finally:
        server.stop()


class ReadmeGunicorn(GunicornServer):
    """gunicorn started with the command line ``argv(port)``."""

    def __init__(self, argv, **kwargs):
        super().__init__(**kwargs)
        self.argv = argv

    def command(self) -> list[str]:
        return self.argv(self.port)


class ReadmeProgram(HttpServer):
    """A README program (a Python file) serving the test project."""

    name = "readme-program"

    def __init__(self, path, env: dict[str, str] | None = None, **kwargs):
        pythonpath = os.pathsep.join(filter(None, [str(REPO_TOP), os.environ.get("PYTHONPATH")]))
        super().__init__(env={"PYTHONPATH": pythonpath, **(env or {})}, **kwargs)
        self.path = path

    def command(self) -> list[str]:
        return [sys.executable, str(self.path)]


def ends_cleanly(raw: bytes) -> bool:
    """Whether a chunked response ends with a chunk of the (spread) retry hint alone, then the last chunk.

    A stream shed at shutdown is told to wait between SSE_RETRY and
    SSE_RETRY x (1 + SSE_RETRY_JITTER) milliseconds.
    """
    end = re.search(rb"\r\n([0-9a-fA-F]+)\r\n(retry: \d+\n\n)\r\n0\r\n\r\n\Z", raw)
    if end is None or int(end.group(1), 16) != len(end.group(2)):  # any case: gunicorn's "D"
        return False
    retry, jitter = DEFAULTS["SSE_RETRY"], DEFAULTS["SSE_RETRY_JITTER"]
    return spread_retry(end.group(2), retry, jitter) is not None


class RawStream:
    """One GET on a raw socket; ``raw`` is every byte the server sent, chunk framing included."""

    def __init__(self, port: int, path: str, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.raw = b""
        self.closed = False

    def read_until(self, predicate, timeout: float = TIMEOUT) -> bytes:
        """Receive until ``predicate(raw)`` holds; fail if the connection closes or time runs out first."""
        deadline = time.monotonic() + timeout
        while not predicate(self.raw):
            remaining = deadline - time.monotonic()
            if self.closed or remaining <= 0:
                state = "closed" if self.closed else f"nothing more within {timeout} s"
                raise AssertionError(f"{state}; received {self.raw[-300:]!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            self.closed = not data
            self.raw += data
        return self.raw

    def read_to_close(self, timeout: float = TIMEOUT) -> bytes:
        """Receive until the server closes the connection; return everything."""
        return self.read_until(lambda _: self.closed, timeout)

    def close(self) -> None:
        self.sock.close()


def exited(pid: int) -> bool:
    """Return whether process ``pid`` has exited (gone, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_for(condition, timeout: float = TIMEOUT, what: str = "condition"):
    """Poll ``condition()`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"No {what} within {timeout} s"
        time.sleep(0.05)
    return value


def warnings_logged(server) -> list[str]:
    """The django_sse check ids (W00n, E0nn) a server logged."""
    return re.findall(r"django_sse\.[EW]\d{3}", server.stderr_text(100_000))


@pytest.fixture
def modules():
    """Load samples as modules (``modules.load("myapp.views", code)``); forgotten at the end."""
    loaded = SampleModules("README.rst")
    yield loaded
    loaded.forget()


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
        """Read to the end of the response, then close it as a server does; return the events."""
        for _ in range(1000):
            if self.read(timeout) is None:
                self.close()  # what gives the stream's slot back
                return self.events
        raise AssertionError("The response did not end.")

    def close(self) -> None:
        """End the stream as a gone client would, read it to its end, then close it."""
        self.response.end_stream()
        while not self.ended:
            self.read()
        close_response(self.response)


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


def test_the_front_page_links_every_page_of_the_docs_and_nothing_else():
    """README's Documentation list names existing pages, all of them (bar the site's own index pages)."""
    site = "https://django-sse.readthedocs.io/en/latest/"
    text = README.read_text(encoding="utf-8")
    # Absolute URLs of the published pages: relative links are broken on PyPI.
    assert not re.findall(r"<(?!https://)[^>]+>`_", text)
    linked = {
        f"docs/{page}.rst" for page in re.findall(rf"<{re.escape(site)}([^>]+)\.html>`_", text)
    }
    pages = {
        str(page.relative_to(REPO_TOP))
        for page in DOCS.rglob("*.rst")
        if "_build" not in page.parts
        and page.name not in ("index.rst", "quickstart.rst", "changelog.rst")
    }
    assert linked == pages


@pytest.mark.parametrize(
    "index", [i for i, block in enumerate(SAMPLES.blocks) if block.language == "python"]
)
def test_every_python_sample_compiles(index):
    """Each Python sample is valid Python (compiling is not exercising: this reads no sample)."""
    block = SAMPLES.blocks[index]
    compile(block.code, block.where, "exec")


def test_settings_table_lists_every_setting_with_its_default():
    """The Settings table has one row per setting of conf.DEFAULTS, each with the real default."""
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    table = text[text.index("   * - Setting") : text.index("For example:")]
    rows = re.findall(r"^   \* - ``(\w+)``\n     - ``(.+?)``\n", table, re.MULTILINE)
    documented = {name: ast.literal_eval(default) for name, default in rows}
    assert len(rows) == len(documented)  # no setting twice
    assert documented == DEFAULTS


def test_supported_versions_are_setup_cfgs_and_the_test_matrix():
    """Supported versions: the Django and Python classifiers, install_requires, and scripts/test's matrix say the same."""
    text = README.read_text(encoding="utf-8")
    section = text.split("Supported versions\n==================\n", 1)[1].split("\n=====", 1)[0]
    bullets = re.findall(r"^\* (.+?)(?=^\* |^$)", section, re.MULTILINE | re.DOTALL)
    django = re.findall(r"\d+\.\d+", bullets[0])
    python_from, python_to = re.match(r"Python (3\.\d+) to (3\.\d+)", bullets[1]).groups()
    pythons = [f"3.{minor}" for minor in range(int(python_from[2:]), int(python_to[2:]) + 1)]
    # "3.10 to 3.13 with Django 5.2, 3.12 and 3.13 with Django 6.0 and 6.1": each Django's oldest Python.
    oldest = {}
    for pair in bullets[1].split(":", 1)[1].split(","):
        allowed_pythons, djangos = pair.split("with Django")
        for version in re.findall(r"\d+\.\d+", djangos):
            oldest[version] = min(re.findall(r"3\.\d+", allowed_pythons), key=lambda v: int(v[2:]))
    assert (django, pythons) == (["5.2", "6.0", "6.1"], ["3.10", "3.11", "3.12", "3.13"])
    assert set(oldest) == set(django)

    setup = configparser.ConfigParser()
    setup.read(REPO_TOP / "setup.cfg")
    classifiers = setup["metadata"]["classifiers"].strip().splitlines()
    assert [
        c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Framework :: Django ::")
    ] == django
    assert [
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.match(r"Programming Language :: Python :: 3\.\d+$", c)
    ] == pythons
    requires = dict(
        re.match(r"([\w-]+)(.*)", line.strip()).groups()
        for line in setup["options"]["install_requires"].strip().splitlines()
    )
    allowed = SpecifierSet(requires["Django"])
    assert all(f"{version}.0" in allowed for version in django)
    assert "4.2.0" not in allowed and "6.2.0" not in allowed  # 4.2 dropped; nothing untested
    assert SpecifierSet(setup["options"]["python_requires"]).contains(python_from)
    assert not SpecifierSet(setup["options"]["python_requires"]).contains("3.9")
    [gevent] = re.findall(r"gevent (\S+) or later", bullets[2])
    assert requires["gevent"] == f">={gevent}"
    test_extra = setup["options.extras_require"]["test"]
    [gunicorn] = re.findall(r"gunicorn (\S+) or later", bullets[2])
    assert f"gunicorn>={gunicorn}" in test_extra.split()
    [redis] = re.findall(r"redis-py (\S+) or later", bullets[2])
    assert setup["options.extras_require"]["redis"].split() == [f"redis>={redis}"]

    # "The whole test suite runs on Django 6.1 with Python 3.13; all of it but ...; a part of it on ..."
    [paragraph] = [p for p in section.split("\n\n") if p.startswith("The whole test suite")]
    whole, most, part = paragraph.split("Django 4.2 is no longer supported")[0].split(";")
    assert " ".join(most.split()).startswith(
        "all of it but the browser, benchmark and Redis topology (Sentinel, Cluster, several hosts) suites"
    )
    script = (REPO_TOP / "scripts" / "test").read_text()
    [left_out] = re.findall(r"left_out_of_most=\(([^)]*)\)", script)
    assert set(re.findall(r"--ignore=(\S+)", left_out)) == {
        "tests/browser",
        "tests/test_benchmarks_smoke.py",
        "tests/test_redis_sentinel.py",
        "tests/test_redis_cluster.py",
        "tests/test_hosts.py",
    }
    said = {
        (py, dj, scope)
        for scope, sentence in (("all", whole), ("most", most), ("part", part))
        for dj, py in re.findall(r"Django (\d+\.\d+)\s+with\s+Python (3\.\d+)", sentence)
    }
    assert "matrix=${SSE_TEST_MATRIX:-$default_matrix}" in script
    venvs = (REPO_TOP / "scripts" / "venvs.sh").read_text()
    [matrix] = re.findall(r'^default_matrix="([^"]*)"', venvs, re.MULTILINE)
    assert said == {tuple(entry.split(":")[:3]) for entry in matrix.split()}
    # "with the newest release of every dependency" / "with the lowest versions setup.cfg
    # declares": the :newest and :lowest entries.
    ends = {
        option: {tuple(entry.split(":")[:3]) for entry in matrix.split() if entry.endswith(option)}
        for option in (":newest", ":lowest")
    }
    assert "with the newest release of every dependency" in " ".join(whole.split())
    assert "with the lowest versions ``setup.cfg`` declares" in " ".join(most.split())
    assert ends == {
        ":newest": {tuple(entry.split(":")[:3]) for entry in matrix.split() if ":all" in entry},
        ":lowest": {tuple(entry.split(":")[:3]) for entry in matrix.split() if ":most" in entry},
    }
    # ", the latter with every server under django_sse.worker.GeventWorker": the ":worker" entry.
    under_worker = {
        (py, dj)
        for dj, py in re.findall(
            r"Django (\d+\.\d+)\s+with\s+Python (3\.\d+),\s+the\s+latter\s+with\s+every\s+server\s+under",
            paragraph,
        )
    }
    assert "``django_sse.worker.GeventWorker``" in paragraph
    assert under_worker == {
        tuple(entry.split(":")[:2]) for entry in matrix.split() if entry.endswith(":worker")
    }
    assert under_worker
    for py, dj, _ in said:
        assert int(py[2:]) >= int(oldest[dj][2:]), (py, dj)


# --- quick start ----------------------------------------------------------------------


def test_pip_install_names_this_package_and_the_extras_the_page_needs():
    """The install line names this package with its redis and gunicorn extras (gunicorn, packaging), and WhiteNoise."""
    (argv, _), *_ = commands(PIP_INSTALL.code)
    assert argv[:2] == ["pip", "install"]
    name, extras = re.fullmatch(r"([\w-]+)\[([\w,]+)\]", argv[2]).groups()
    setup = configparser.ConfigParser()
    setup.read(REPO_TOP / "setup.cfg")
    assert name == setup["metadata"]["name"]
    defined = setup["options.extras_require"]
    assert set(extras.split(",")) == {"redis", "gunicorn"}
    assert any(line.startswith("redis") for line in defined["redis"].split())
    required = defined["gunicorn"].split()
    assert any(line.startswith("gunicorn") for line in required) and "packaging" in required
    assert argv[3:] == ["whitenoise"]  # what serves the client under gunicorn (the settings)
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in QUICK_SETTINGS.code


@pytest.mark.integration
def test_quick_start_project_passes_check_collects_the_client_and_renders_the_page(tmp_path):
    """startproject, the page's files, check, migrate, collectstatic: the page imports the collected client."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    cwd = tmp_path

    def run(argv: list[str]) -> str:
        program = {"django-admin": [sys.executable, "-m", "django"], "python": [sys.executable]}
        command = program[argv[0]] + argv[1:]
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result.stdout

    for argv, _ in commands(PIP_INSTALL.code)[1:]:  # the first installs (this venv has it)
        if argv[0] == "cd":
            cwd = cwd / argv[1]
        else:
            run(argv)
    for sample in (QUICK_SETTINGS, CLOCK_VIEW, QUICK_URLS, PROJECT_URLS, QUICK_TEMPLATE):
        write_sample(cwd, sample.code)
    run(["python", "manage.py", "check", "--fail-level", "WARNING"])
    for argv, _ in commands(QUICK_PREPARE.code):
        run(argv)

    page = run(
        [
            "python",
            "manage.py",
            "shell",
            "-c",
            "from django.test import Client\n"
            "from django.test.utils import setup_test_environment\n"
            "setup_test_environment()\n"
            "print(Client().get('/').content.decode())",
        ]
    )
    [client_url] = re.findall(r'import \{connect\} from "([^"]+)"', page)
    assert client_url == "/static/django_sse/eventsource.js"
    assert (cwd / "staticfiles" / "django_sse" / "eventsource.js").is_file()


def test_quick_start_serves_the_clock_and_the_channels(modules, settings, client, streams_opened):
    """The quick start's URLconf serves ClockView's ticks, and send_event reaches both channel streams."""
    modules.load("myapp.views", CLOCK_VIEW.code)
    modules.load("myapp.urls", QUICK_URLS.code)
    settings.ROOT_URLCONF = "myapp.urls"

    clock = streams_opened(client.get("/clock/"))
    [tick] = clock.until(named("tick"))
    assert float(tick.data) == pytest.approx(time.time(), abs=60)

    orders = streams_opened(client.get("/orders/events/"))
    dashboard = streams_opened(client.get("/dashboard/events/"))
    exec(compile(QUICK_SEND.code, "<README.rst send_event>", "exec"), {})

    for stream in (orders, dashboard):
        [event] = [e for e in stream.until(named("order-shipped")) if e.type == "order-shipped"]
        assert json.loads(event.data) == {"id": 42, "carrier": "DHL"}


@pytest.mark.browser
@pytest.mark.integration
def test_quick_start_page_shows_each_tick_and_each_order(example, browser):  # noqa: F811
    """The page's markup and module, on the example (client from WhiteNoise): ticks shown, an order listed."""
    html = render(QUICK_TEMPLATE.code)
    markup = re.sub(r"<script.*</script>|<!doctype html>|<title>.*?</title>", "", html, flags=re.S)
    script = module_script(QUICK_TEMPLATE.code)
    script = script.replace('"/clock/"', '"/clock/events/"')
    script = script.replace('"/orders/events/"', '"/feed/events/"')
    driver = browser()
    driver.get(example.url + "/")
    driver.execute_script(
        "document.body.innerHTML = arguments[0];"
        "const script = document.createElement('script');"
        "script.type = 'module';"
        "script.textContent = arguments[1];"
        "document.head.append(script);",
        markup,
        script,
    )

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    wait = WebDriverWait(driver, WAIT)
    clock = wait.until(lambda d: d.find_element(By.ID, "clock").text.startswith("{") and d)
    assert set(json.loads(clock.find_element(By.ID, "clock").text)) == {"now", "tick"}
    wait.until(lambda _: example.subscribers("feed") >= 1)
    example.manage("send_event", "feed", "order-shipped", '{"id": 7, "carrier": "UPS"}', "--json")
    item = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#shipped li"))
    assert [li.text for li in item] == ["Order 7 shipped by UPS"]


@pytest.mark.integration
def test_gunicorn_command_runs_gevent_with_no_warning_and_a_blocked_stream_leaves_the_worker_free(
    tmp_path,
):
    """The quick start's command: gevent, worker_connections above SSE_MAX_STREAMS, no W00n; streams don't block."""
    [(argv, _)] = commands(GUNICORN_COMMAND.code)
    assert argv[0] == "gunicorn"
    config, apps = gunicorn_settings(argv[1:])
    assert config.worker_class_str == "gevent"
    assert config.worker_connections > DEFAULTS["SSE_MAX_STREAMS"]  # no django_sse.W003
    assert apps == ["mysite.wsgi"]
    # The values that the deployment section's list of options explains.
    text = all_pages_text()
    [explained] = re.findall(r"^\* ``--worker-connections (\d+)``", text, re.MULTILINE)
    [graceful] = re.findall(r"^\* ``--graceful-timeout (\d+)``", text, re.MULTILINE)
    assert (config.worker_connections, config.graceful_timeout) == (int(explained), int(graceful))

    with serving_readme_command(argv, tmp_path, worker="gevent") as server:
        with SseClient.connect(server.port, "/blocked/") as blocked:
            [hello] = blocked.read_events(1)
            assert hello.data == "blocked next"
            with SseClient.connect(server.port, "/ticks/?n=3&interval=0.05") as ticks:
                assert [event.data for event in ticks.read_events(3)] == ["0", "1", "2"]


@pytest.mark.integration
def test_worker_sample_installs_gunicorn_and_serves_streams_on_the_short_path(tmp_path):
    """The extra holds gunicorn and packaging; the command runs the library's worker, no warning."""
    [(pip, _), (argv, _)] = commands(WORKER_COMMAND.code)
    extra = re.fullmatch(r"django-sse\[(\w+)\]", pip[2]).group(1)
    setup = configparser.ConfigParser()
    setup.read(REPO_TOP / "setup.cfg")
    required = setup["options.extras_require"][extra].split()
    assert pip[:2] == ["pip", "install"]
    assert any(line.startswith("gunicorn") for line in required) and "packaging" in required
    config, apps = gunicorn_settings(argv[1:])
    assert config.worker_class_str == "django_sse.worker.GeventWorker"
    assert config.worker_connections > DEFAULTS["SSE_MAX_STREAMS"]  # no django_sse.W003
    assert apps == ["mysite.wsgi"]

    with serving_readme_command(argv, tmp_path, worker="django_sse.worker.GeventWorker") as server:
        with SseClient.connect(server.port, "/ticks/?n=3&interval=0.05") as ticks:
            assert [event.data for event in ticks.read_events(3)] == ["0", "1", "2"]


def test_testing_sample_is_a_passing_test_that_fails_when_the_event_does_not_come(client):
    """The README's test of a RedisQueueView passes; with the publish taken out it fails in time."""
    from django_sse.testing import StreamTimeout

    namespace: dict = {}
    exec(compile(TESTING_SAMPLE.code, "<README.rst tests/test_news.py>", "exec"), namespace)
    namespace["test_news_stream"](client)

    broken = TESTING_SAMPLE.code.replace('send_event("update", {"n": 1}, channel="news")', "pass")
    assert broken != TESTING_SAMPLE.code
    exec(compile(broken, "<README.rst, without the publish>", "exec"), namespace)
    with pytest.raises(StreamTimeout):  # its own timeout: the test ends, it does not hang
        namespace["test_news_stream"](client)


# --- BaseSseView -----------------------------------------------------------------------


def test_countdown_sample_refuses_anonymous_users_and_resumes_from_last_event_id(modules):
    """CountdownView: 403 without a user; with one, retry 5000, counts down from Last-Event-ID to 0, ends."""
    view = modules.load("myapp.views", COUNTDOWN_VIEW.code).CountdownView.as_view()
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
    view = modules.load("notifications.views", USER_EVENTS_VIEW.code).UserEventsView.as_view()
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


FAKE_ORDER_MODEL = """
class _Open:
    def count(self):
        return 3


class _Manager:
    def filter(self, **lookups):
        assert lookups == {"open": True}
        return _Open()


class Order:
    objects = _Manager()
"""


def test_initial_state_sample_sends_the_count_then_live_events_and_nothing_on_resume(modules):
    """OrdersView: a new client gets {"open": 3} first, then the live event; a resuming one does not."""
    from django_sse import send_event
    from django_sse.testing import SseStream, memory_broker

    modules.load("shop.models", FAKE_ORDER_MODEL)
    view = modules.load("shop.views", INITIAL_STATE_VIEW.code).OrdersView.as_view()
    with memory_broker():
        stream = SseStream(view(RequestFactory().get("/orders/events/")))
        try:
            stream.read_opening()
            event_id = send_event("order-shipped", {"id": 1}, channel="orders")
            first, live = stream.read_events(2)
        finally:
            stream.close()
        send_event("order-shipped", {"id": 2}, channel="orders")
        request = RequestFactory().get("/orders/events/", HTTP_LAST_EVENT_ID=event_id)
        resumed = SseStream(view(request))
        try:
            [replayed] = resumed.read_events(1)
        finally:
            resumed.close()

    assert (first.type, first.json()) == ("orders", {"open": 3})
    assert (live.type, live.json(), live.last_event_id) == ("order-shipped", {"id": 1}, event_id)
    assert (replayed.type, replayed.json()) == ("order-shipped", {"id": 2})


# --- publishing -------------------------------------------------------------------------


@pytest.fixture
def orders_on_redis(settings, redis_url, redis_server, streams_opened, modules, client):
    """A stream of the channel "orders" on Redis, subscribed; the broker of this process uses Redis."""
    settings.SSE_REDIS_URL = redis_url
    modules.load("myapp.views", CLOCK_VIEW.code)
    modules.load("myapp.urls", QUICK_URLS.code)
    settings.ROOT_URLCONF = "myapp.urls"
    stream = streams_opened(client.get("/orders/events/"))
    wait_subscribed(redis_server, "orders")
    return stream


@pytest.mark.integration
@pytest.mark.parametrize("sample", ["tutorial", "quick start"])
def test_send_event_command_sample_publishes_json_to_a_stream(
    orders_on_redis, redis_server, sample
):
    """`manage.py send_event orders order-shipped '{"id": 42}' --json` prints the id the stream receives."""
    shown = {"tutorial": SEND_EVENT_COMMAND, "quick start": QUICK_SEND_COMMAND}[sample]
    [(argv, output)] = commands(shown.code)
    assert argv[:3] == ["python", "manage.py", "send_event"]
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(*argv[2:], stdout=out)
    event_id = out.getvalue().strip()
    assert re.fullmatch(r"\d+-\d+", event_id)
    assert all(re.fullmatch(r"\d+-\d+", line) for line in output)  # the id, where shown

    [event] = [
        e for e in orders_on_redis.until(named("order-shipped")) if e.type == "order-shipped"
    ]
    assert (json.loads(event.data), event.last_event_id) == (json.loads(argv[5]), event_id)


@pytest.mark.integration
def test_redis_cli_sample_publishes_with_history(orders_on_redis, redis_server, tmp_path):
    """The redis-cli call of publish.lua records the event in sse:orders and a stream receives it with that id."""
    [(argv, output)] = commands(REDIS_CLI.code)
    argv = [argv[0], "-p", str(redis_server.port), *argv[1:]]
    # As the README says: the installed package's script, copied into the project.
    script = tmp_path / "django_sse" / "brokers" / "publish.lua"
    script.parent.mkdir(parents=True)
    script.write_text(
        resources.files("django_sse.brokers.redis").joinpath("publish.lua").read_text()
    )
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
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
    code = FOREIGN_PUBLISHER.code.replace("redis://localhost:6379/0", redis_url)
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


def page_with_recorders(example, browser):  # noqa: F811  (the fixtures, passed on)
    """A page of the example whose showShipped, reloadOrders and showConnection record ``calls``."""
    from selenium.webdriver.support.wait import WebDriverWait

    driver = browser()
    driver.get(example.url + "/")
    driver.execute_script(
        "window.calls = [];"
        "window.showShipped = (order) => calls.push(['shipped', order]);"
        "window.reloadOrders = (channels) => calls.push(['reload', channels]);"
        "window.showConnection = (state, role) => calls.push(['state', state, role]);"
    )
    return driver, WebDriverWait(driver, WAIT, poll_frequency=0.1)


@pytest.mark.browser
@pytest.mark.integration
def test_stream_reset_sample_reloads_on_reset_and_handles_events(example, browser):  # noqa: F811
    """In Chromium, the sample's stream-reset listener runs for a lost position, then events arrive."""
    driver, wait = page_with_recorders(example, browser)
    # An id this channel never issued: the server cannot resume from it.
    driver.execute_script(
        RESET_SCRIPT.code.replace('"/orders/events/"', '"/feed/events/?lastEventId=1-0"')
    )
    wait.until(lambda d: d.execute_script("return calls.length") >= 1)
    wait.until(lambda _: example.subscribers("feed") >= 1)
    example.manage("send_event", "feed", "order-shipped", '{"id": 42}', "--json")
    wait.until(lambda d: d.execute_script("return calls.length") >= 2)
    assert driver.execute_script("return calls") == [["reload", ["feed"]], ["shipped", {"id": 42}]]


@pytest.mark.browser
@pytest.mark.integration
def test_browser_client_sample_resets_parses_json_and_reports_state(example, browser):  # noqa: F811
    """In Chromium, the client sample (as a module): onReset for a lost position, parsed JSON, state."""
    driver, wait = page_with_recorders(example, browser)
    driver.execute_script(
        "const script = document.createElement('script');"
        "script.type = 'module';"
        "script.textContent = arguments[0];"
        "document.head.append(script);",
        module_script(CLIENT_SCRIPT.code).replace(
            '"/orders/events/"', '"/feed/events/?lastEventId=1-0"'
        ),
    )
    wait.until(lambda d: ["reload", ["feed"]] in d.execute_script("return calls"))
    wait.until(lambda _: example.subscribers("feed") >= 1)
    example.manage("send_event", "feed", "order-shipped", '{"id": 42}', "--json")
    wait.until(lambda d: ["shipped", {"id": 42}] in d.execute_script("return calls"))
    calls = driver.execute_script("return calls")
    assert ["state", "open", "leader"] in calls
    assert calls.index(["reload", ["feed"]]) < calls.index(["shipped", {"id": 42}])


def test_static_files_samples_put_whitenoise_after_security_and_nginx_on_static_root():
    """WhiteNoise right after SecurityMiddleware, serving STATIC_ROOT; nginx aliases STATIC_URL to it; the example agrees."""
    from django.utils.module_loading import import_string

    namespace: dict = {"BASE_DIR": REPO_TOP / "mysite"}
    exec(compile(STATIC_SETTINGS.code, "<browser-client.rst settings.py>", "exec"), namespace)
    middleware = namespace["MIDDLEWARE"]
    assert middleware[:2] == [
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
    ]
    import_string(middleware[1])  # installed with the test extra, as the page says to
    static_root = namespace["STATIC_ROOT"]
    assert static_root == REPO_TOP / "mysite" / "staticfiles"

    [location] = re.findall(r"location (\S+) \{", STATIC_NGINX.code)
    [alias] = re.findall(r"alias (\S+);", STATIC_NGINX.code)
    # nginx's alias replaces the location's prefix: both end with a slash.
    assert location == "/static/" and alias.endswith("/staticfiles/")

    project = REPO_TOP / "example" / "example"
    example_settings = (project / "settings.py").read_text(encoding="utf-8")
    assert '"whitenoise.middleware.WhiteNoiseMiddleware"' in example_settings
    assert "STATIC_ROOT" in example_settings
    assert "serve" not in (project / "urls.py").read_text(encoding="utf-8")


# --- settings and deployment ------------------------------------------------------------


def test_settings_sample_passes_the_checks_and_means_what_it_says(settings):
    """The settings sample installs the app, selects Redis, makes typing-* ephemeral; no check fails."""
    namespace: dict = {}
    exec(compile(SETTINGS.code, "<README.rst settings.py>", "exec"), namespace)
    assert "django_sse" in namespace["INSTALLED_APPS"]
    for name, value in namespace.items():
        if name.startswith("SSE_"):
            setattr(settings, name, value)

    assert [message for check in checks.ALL_CHECKS for message in check()] == []
    assert sse_settings.broker_name == "redis"
    assert not sse_settings.history_enabled("typing-ann")
    assert sse_settings.history_enabled("orders")
    assert sse_settings.SSE_MAX_LIFETIME == 3600


def django_sse_imports(code: str) -> list[str]:
    """The modules of django_sse that ``code`` imports."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(node.module or "")
    return [name for name in found if name.split(".")[0] == "django_sse"]


@pytest.mark.integration
def test_gunicorn_conf_sample_matches_the_repository_file_and_needs_no_hook(monkeypatch, tmp_path):
    """The sample's values and post_worker_init are gunicorn.conf.py's; neither imports django_sse; it serves, warning-free."""
    for name in (
        "SSE_WORKER_CONNECTIONS",
        "SSE_GRACEFUL_TIMEOUT",
        "SSE_GC_THRESHOLD",
        "SSE_WORKERS",
        "SSE_WORKER_CLASS",
    ):
        monkeypatch.delenv(name, raising=False)  # the file's defaults, as the README shows them
    code = GUNICORN_CONF.code
    path = REPO_TOP / "gunicorn.conf.py"
    shown: dict = {}
    exec(compile(code, "<README.rst gunicorn.conf.py>", "exec"), shown)
    actual = runpy.run_path(str(path))
    values = {
        name: value
        for name, value in shown.items()
        if not name.startswith("_")
        and not callable(value)
        and not isinstance(value, types.ModuleType)
    }
    assert set(values) == {
        "worker_class",
        "worker_connections",
        "graceful_timeout",
        "keepalive",
        "backlog",
    }
    assert values == {name: actual[name] for name in values}
    assert values["worker_connections"] > DEFAULTS["SSE_MAX_STREAMS"]  # no django_sse.W003

    calls: dict[str, list] = {"shown": [], "actual": []}
    for who, hook in (("shown", shown["post_worker_init"]), ("actual", actual["post_worker_init"])):
        monkeypatch.setattr(gc, "freeze", lambda who=who: calls[who].append(("freeze",)))
        monkeypatch.setattr(gc, "set_threshold", lambda *a, who=who: calls[who].append(a))
        hook(SimpleNamespace(alive=True))
    monkeypatch.undo()
    assert calls["shown"] == calls["actual"] == [("freeze",), (10000, 50, 100)]
    assert django_sse_imports(code) == django_sse_imports(path.read_text()) == []

    # And `gunicorn -c gunicorn.conf.py mysite.wsgi` serves streams, with no django_sse warning.
    argv = ["gunicorn", "-c", "gunicorn.conf.py", "mysite.wsgi"]
    assert " ".join(argv) in all_pages_text().replace("\n", " ")
    server = ReadmeGunicorn(lambda port: runnable_gunicorn(argv, port), log_dir=tmp_path)
    server.start()
    try:
        with SseClient.connect(server.port, "/ticks/?n=2&interval=0.05") as ticks:
            assert [event.data for event in ticks.read_events(2)] == ["0", "1"]
        assert warnings_logged(server) == [], server.stderr_text()
    finally:
        server.stop()


def test_dockerfile_cmd_is_the_exec_form_of_the_gevent_command():
    """The CMD is a JSON list (gunicorn gets docker stop's TERM): gevent, the EXPOSEd port, a graceful timeout below --stop-timeout."""
    lines = [line for line in DOCKERFILE.code.splitlines() if line and not line.startswith("#")]
    instructions = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}
    assert set(instructions) == {"EXPOSE", "CMD"}
    argv = json.loads(instructions["CMD"])  # the exec form; the shell form is not JSON
    assert argv[0] == "gunicorn"
    config, apps = gunicorn_settings(argv[1:])
    assert config.worker_class_str == "gevent"
    assert config.worker_connections > DEFAULTS["SSE_MAX_STREAMS"]
    assert config.bind == [f"0.0.0.0:{instructions['EXPOSE']}"]
    assert config.workers > 1 and apps == ["mysite.wsgi"]
    text = all_pages_text()
    [stop_timeout] = re.findall(r"--stop-timeout (\d+)", text)
    [grace_period] = re.findall(r"stop_grace_period: (\d+)s", text)
    assert config.graceful_timeout < int(stop_timeout) == int(grace_period)


def systemd_unit(text: str) -> configparser.ConfigParser:
    """Parse a unit file as systemd reads it: case-sensitive keys, backslash-continued lines joined."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read_string(re.sub(r"\\\n\s*", " ", text))
    return unit


@pytest.mark.integration
def test_systemd_unit_starts_reloads_and_stops_gunicorn_as_systemd_would(tmp_path):
    """ExecStart (one worker) notifies READY=1; ExecReload's HUP and KillSignal's TERM end streams cleanly, before graceful_timeout."""
    service = systemd_unit(SYSTEMD_UNIT.code)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/gunicorn")
    config, apps = gunicorn_settings(argv[1:])
    assert config.worker_class_str == "gevent"
    assert config.worker_connections > DEFAULTS["SSE_MAX_STREAMS"]
    assert config.graceful_timeout < int(service["TimeoutStopSec"])
    assert int(service["LimitNOFILE"]) > config.worker_connections  # a descriptor per connection
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "main")
    assert (service["KillSignal"], service["KillMode"]) == ("SIGTERM", "mixed")
    assert shlex.split(service["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]

    # systemd's notification socket; a short path (sun_path holds 108 bytes).
    notify_dir = tempfile.mkdtemp(prefix="sd-")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(notify_dir, "notify"))
    notify.settimeout(TIMEOUT)
    server = ReadmeGunicorn(
        lambda port: runnable_gunicorn(argv, port, workers=1),  # the unit has 4
        env={"NOTIFY_SOCKET": notify.getsockname()},
        log_dir=tmp_path,
    )
    server.start()
    streams_seen: list[RawStream] = []
    try:
        assert b"READY=1" in notify.recv(4096)
        master = server.pid
        [old_worker] = server.worker_pids()
        before = RawStream(server.port, "/blocked/")
        streams_seen.append(before)
        before.read_until(lambda raw: b"data: blocked next" in raw)

        # systemctl reload: ExecReload, with $MAINPID the master.
        reload = [
            word.replace("$MAINPID", str(master)) for word in shlex.split(service["ExecReload"])
        ]
        subprocess.run(reload, check=True, timeout=TIMEOUT)
        assert ends_cleanly(before.read_to_close())
        wait_for(lambda: exited(old_worker), what="exit of the old worker")
        [new_worker] = wait_for(lambda: [pid for pid in server.worker_pids() if pid != old_worker])
        after = RawStream(server.port, "/blocked/")
        streams_seen.append(after)
        after.read_until(lambda raw: b"data: blocked next" in raw)

        # systemctl stop: KillSignal to the master alone (KillMode=mixed).
        process = server.process
        started = time.monotonic()
        os.kill(master, getattr(signal, service["KillSignal"]))
        process.wait(int(service["TimeoutStopSec"]))
        stopped_in = time.monotonic() - started
        assert ends_cleanly(after.read_to_close())
        assert process.returncode == 0
        # The streams did not make it wait out graceful_timeout: each worker ended by itself.
        assert stopped_in < config.graceful_timeout, stopped_in
        assert server.killed_workers([old_worker, new_worker]) == []
        assert server.forced_stops() == []
        assert exited(new_worker)
    finally:
        for stream in streams_seen:
            stream.close()
        server.stop()
        notify.close()
        os.unlink(os.path.join(notify_dir, "notify"))
        os.rmdir(notify_dir)


def test_procfile_line_binds_the_platform_port_and_stops_before_heroku_kills(monkeypatch):
    """The web process: gunicorn -k gevent on 0.0.0.0:$PORT, graceful timeout below Heroku's 30 s."""
    [line] = PROCFILE.code.splitlines()
    process, command = line.split(": ", 1)
    assert process == "web"
    monkeypatch.setenv("PORT", "5123")  # what the platform does; its shell expands it
    argv = [os.path.expandvars(word) for word in shlex.split(command)]
    assert argv[0] == "gunicorn"
    config, apps = gunicorn_settings(argv[1:])
    assert config.worker_class_str == "gevent"
    assert config.worker_connections > DEFAULTS["SSE_MAX_STREAMS"]
    assert config.bind == ["0.0.0.0:5123"] and apps == ["mysite.wsgi"]
    [heroku] = re.findall(
        r"Heroku sends ``TERM``\s+and kills (\d+) seconds later", all_pages_text()
    )
    assert config.graceful_timeout < int(heroku)


def pywsgi_program(tmp_path, env: dict[str, str] | None = None) -> ReadmeProgram:
    """The README's serve.py, written for the test project on a free loopback port (not started)."""
    program = ReadmeProgram(tmp_path / "serve.py", env=env, log_dir=tmp_path)
    code = PYWSGI_PROGRAM.code
    for old, new in (
        ("from mysite.wsgi import application", "from tests.wsgi import application"),
        ('("0.0.0.0", 8000)', f'("127.0.0.1", {program.port})'),
    ):
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    program.path.write_text(code)
    return program


def stop_gracefully_timeout() -> float:
    """The timeout that stop_gracefully(server) uses when, as in the sample, none is given."""
    from django_sse.shutdown import stop_gracefully

    return inspect.signature(stop_gracefully).parameters["timeout"].default


@pytest.mark.integration
def test_pywsgi_sample_ends_every_stream_cleanly_on_term_and_exits_0(tmp_path):
    """serve.py on the test project: on TERM a blocked and a ticking stream end with the retry hint and the last chunk; exit 0 within stop_gracefully's timeout."""
    timeout = stop_gracefully_timeout()
    assert timeout == 10.0
    server = pywsgi_program(tmp_path)
    server.start()
    opened: list[RawStream] = []
    try:
        blocked = RawStream(server.port, "/blocked/")
        ticking = RawStream(server.port, "/ticks/?interval=0.1")
        opened += [blocked, ticking]
        blocked.read_until(lambda raw: b"data: blocked next" in raw)
        ticking.read_until(lambda raw: b"event: tick\ndata: 1\n" in raw)

        process = server.process
        server.send_signal(signal.SIGTERM)
        # Within stop_gracefully's timeout: its deadline starts after the signal, so a
        # program that waited it out would still be running here.
        process.wait(timeout)
        for stream in opened:
            assert ends_cleanly(stream.read_to_close()), stream.raw[-200:]
        assert process.returncode == 0, server.stderr_text()
    finally:
        for stream in opened:
            stream.close()
        server.stop()


@pytest.mark.integration
def test_pywsgi_sample_waits_for_a_stream_whose_client_reads_slowly(tmp_path):
    """serve.py on TERM, a stream's client behind on 4 MB: the program waits; the stream ends cleanly once it catches up."""
    timeout = stop_gracefully_timeout()
    server = pywsgi_program(
        tmp_path, env={"DJANGO_SSE_TEST_SETTINGS": '{"ROOT_URLCONF": "tests.readme_urls"}'}
    )
    server.start()
    # 4 MB through a 4 KB receive window takes a few seconds, within stop_gracefully's 10 s.
    slow = RawStream(server.port, "/big/?n=4", receive_buffer=4096)
    try:
        slow.read_until(lambda raw: b"event: big" in raw)  # the rest waits for this client
        server.send_signal(signal.SIGTERM)
        # The program has ended the stream while its client still reads nothing.
        wait_for(lambda: "Ending 1 stream(s)" in server.stderr_text(), what="the streams' end")
        slow.read_to_close(timeout)  # reading again, at full speed
        assert ends_cleanly(slow.raw), slow.raw[-100:]
        assert server.process.wait(timeout) == 0
    finally:
        slow.close()
        server.stop()


def test_nginx_sample_turns_buffering_off_and_outlasts_the_heartbeat(client):
    """The nginx location streams unbuffered over HTTP/1.1 with a read timeout above the heartbeat."""
    directives = {}
    for line in NGINX.code.splitlines():
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
    modules.load("myproject.channels", CHANNEL_MANAGER.code)
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
    exec(compile(LEGACY_SETTINGS.code, "<README.rst legacy settings>", "exec"), namespace)
    settings.REDIS_SSEQUEUE_CONNECTION_SETTINGS = namespace["REDIS_SSEQUEUE_CONNECTION_SETTINGS"]
    assert sse_settings.redis_url == "redis://localhost:6379/0"
    assert sse_settings.broker_name == "redis"
    assert [message for check in checks.ALL_CHECKS for message in check()] == []


# --- the wire format ---------------------------------------------------------------


def test_the_wire_format_page_shows_byte_for_byte_what_a_stream_sends():
    """The transcript: status, headers, opening, the start's id, the event, a heartbeat; only the ids differ."""
    head, _, body = STREAM_TRANSCRIPT.code.partition("\n\n")
    status, *header_lines = head.splitlines()
    shown_ids = re.findall(r"^id: (\S+)$", body, re.MULTILINE)
    view = RedisQueueView.as_view(redis_channel="orders", heartbeat_interval=0.2)
    with memory_broker():
        start_id = send_event("order-placed", {"id": 42}, channel="orders")
        keeper = view(RequestFactory().get("/orders/events/"))  # the channel is in use already
        keeper_chunks = iter(keeper.streaming_content)
        next(keeper_chunks)
        response = view(RequestFactory().get("/orders/events/"))
        chunks = iter(response.streaming_content)
        sent = [next(chunks)]
        event_id = send_event("order-shipped", {"id": 42, "carrier": "DHL"}, channel="orders")
        while not sent[-1].startswith(b":"):
            sent.append(next(chunks))
        for stream in (keeper, response):
            close_response(stream)

    assert status == f"HTTP/1.1 {response.status_code} {response.reason_phrase}"
    assert [f"{name}: {value}" for name, value in response.headers.items()] == header_lines
    expected = body
    for shown, real in zip(shown_ids, [start_id, event_id], strict=True):
        expected = expected.replace(shown, real)
    assert b"".join(sent).decode() == expected + "\n"  # the sample's last blank line is cut


# --- the checker of this module ---------------------------------------------------------

EXTRA_BLOCK = "\n.. code-block:: python\n\n    print('a sample that no test runs')\n"


def test_the_checker_flags_a_sample_added_to_a_copy_of_the_readme(tmp_path):
    """Every block of README.rst and the pages is found by a lookup of this module; a block added to a copy is flagged."""
    for extra, expected in (("", []), (EXTRA_BLOCK, ["(python): no test looks it up"])):
        copies = []
        for page in (README, *PAGES):
            copy = tmp_path / page.relative_to(REPO_TOP)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
            copies.append(copy)
        with copies[-1].open("a", encoding="utf-8") as last_page:
            last_page.write(extra)
        samples = Samples(*copies)
        found = [samples.find(h.language, h.marker, len(h.indices)) for h in SAMPLES.handles]
        samples.start("test_reads_them_all")
        for sample in found:
            assert sample.code
        samples.stop()
        samples.settle("test_reads_them_all", passed=True)
        missing = samples.unexercised()
        assert [re.sub(r"^\S+ line \d+ ", "", m) for m in missing] == expected
        if extra:
            [added] = [block for block in samples.blocks if "no test runs" in block.code]
            assert missing[0].startswith(f"{added.where} ")
            assert added.file == str(copies[-1].relative_to(tmp_path))


TOY_README = """\
Toy
===

.. code-block:: python

    # read by a passing test

.. code-block:: python

    # read at import

.. code-block:: python

    # read by a failing test

.. code-block:: python

    # read by a skipped test

.. code-block:: python

    # looked up, never read

.. code-block:: python

    # looked up by nobody
"""

TOY_HEADER = """\
from pathlib import Path

import pytest

from tests.support.readme_samples import Samples, track

SAMPLES = Samples(Path(__file__).with_name("TOY.rst"))
readme_sample_reader = track(SAMPLES)
"""

TOY_MODULES = {
    # Every way a sample can go without a passing test that read it.
    "test_toy_gaps.py": TOY_HEADER
    + """
PASSING = SAMPLES.find("python", "# read by a passing test")
AT_IMPORT = SAMPLES.find("python", "# read at import")
AT_IMPORT.code  # the old way: registered when the module is imported
FAILING = SAMPLES.find("python", "# read by a failing test")
SKIPPED = SAMPLES.find("python", "# read by a skipped test")
NEVER_READ = SAMPLES.find("python", "# looked up, never read")


def test_passes():
    exec(PASSING.code, {})


def test_fails():
    FAILING.code
    assert False, "the sample does not do what the README says"


def test_is_skipped():
    SKIPPED.code
    pytest.skip("not here")



def test_every_sample_is_exercised(request):
    SAMPLES.check(request)
""",
    # Every sample read by a passing test.
    "test_toy_complete.py": TOY_HEADER
    + """
ALL = [SAMPLES.find("python", f"# {words}") for words in (
    "read by a passing test", "read at import", "read by a failing test",
    "read by a skipped test", "looked up, never read", "looked up by nobody",
)]


def test_reads_them_all():
    for sample in ALL:
        exec(sample.code, {})


def test_every_sample_is_exercised(request):
    SAMPLES.check(request)
""",
}


def run_toy_session(directory, *args: str) -> dict[tuple[str, str], tuple[str, str]]:
    """Run pytest on the toy modules in ``directory``; return {(module, test): (outcome, message)}."""
    report = directory / "report.xml"
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_TOP), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:django", "-q",
         f"--junitxml={report}", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert report.exists(), result.stdout + result.stderr
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname").rsplit(".", 1)[-1]
        verdict = next(iter(case), None)
        outcome = "passed" if verdict is None else verdict.tag
        outcomes[module, case.get("name")] = (
            outcome,
            "" if verdict is None else verdict.get("message", ""),
        )
    return outcomes


def test_the_checker_counts_only_reads_by_tests_that_passed(tmp_path):
    """In a real pytest run: reads at import, in failing or skipped tests, or by no test fail the checker."""
    (tmp_path / "TOY.rst").write_text(TOY_README)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for name, code in TOY_MODULES.items():
        (tmp_path / name).write_text(code)
    lines = {block.code.strip("# \n"): block.line for block in read_blocks(TOY_README)}

    outcomes = run_toy_session(tmp_path, *TOY_MODULES)
    assert {key: outcome for key, (outcome, _) in outcomes.items()} == {
        ("test_toy_gaps", "test_passes"): "passed",
        ("test_toy_gaps", "test_fails"): "failure",
        ("test_toy_gaps", "test_is_skipped"): "skipped",
        ("test_toy_gaps", "test_every_sample_is_exercised"): "failure",
        ("test_toy_complete", "test_reads_them_all"): "passed",
        ("test_toy_complete", "test_every_sample_is_exercised"): "passed",
    }
    message = outcomes["test_toy_gaps", "test_every_sample_is_exercised"][1]
    flagged = sorted(int(n) for n in re.findall(r"line (\d+) \(python\)", message))
    assert flagged == sorted(n for words, n in lines.items() if words != "read by a passing test")
    for words, reason in (
        ("read at import", "read only outside any test"),
        ("read by a failing test", "read only by tests that did not pass: ['test_fails']"),
        ("read by a skipped test", "read only by tests that did not pass: ['test_is_skipped']"),
        ("looked up, never read", "looked up, but no test read it"),
        ("looked up by nobody", "no test looks it up"),
    ):
        assert f"line {lines[words]} (python): {reason}" in message

    # With a test deselected, the checker cannot judge: it skips rather than pass or fail.
    partial = run_toy_session(tmp_path, "test_toy_complete.py", "-k", "not reads_them_all")
    assert [outcome for outcome, _ in partial.values()] == ["skipped"]


@pytest.mark.integration
def test_the_testcase_sample_passes_under_djangos_runner_and_leaves_the_database_usable(
    tmp_path,
):
    """The testing guide's TestCase, then a test that uses the database, under ``manage.py test``."""
    module = tmp_path / "club_sample.py"
    module.write_text(
        TESTCASE_SAMPLE.code
        + "\n\nclass ZNextTests(TestCase):\n"
        + "    def test_the_database_is_clean_and_usable(self):\n"
        + "        self.assertEqual(User.objects.count(), 0)\n"
        + "        User.objects.create_user('next')\n",
        encoding="utf-8",
    )
    result = run_django_tests("club_sample", tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ran 2 tests" in result.stderr


def test_every_sample_is_exercised(request):
    """Every code block of README.rst and of the pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
