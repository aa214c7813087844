"""Fixtures for the browser tests (also used by tests/docs/): the example project under gunicorn or uvicorn + Redis, and headless Chromium.

``example`` serves the project on the server named by ``example_kind``:
"gunicorn" here (tests/docs/), each of ``EXAMPLE_KINDS`` in
tests/browser/ (its conftest.py parametrises ``example_kind``).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.servers import REPO_TOP, GunicornServer, RedisServer, UvicornServer

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGUMENTS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
]
# Every wait for the page is bounded by this: generous, for a loaded 2-core machine.
WAIT = 20
#: The servers the browser tests run the example on: as ./scripts/example and ./scripts/example-asgi do.
EXAMPLE_KINDS = ["gunicorn", "uvicorn"]


@dataclass
class Example:
    """The example project served by gunicorn (gevent worker) or uvicorn on a real Redis."""

    redis: RedisServer
    server: GunicornServer | UvicornServer

    @property
    def url(self) -> str:
        return self.server.url

    def crash(self) -> None:
        """SIGKILL the process that serves, as a crash would; a new one serves on the same port.

        gunicorn's master starts a new worker; uvicorn (one process, no
        master) is started again, as its supervisor (systemd) would.
        """
        crash(self.server)

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run ``python example/manage.py ARGS`` in its own process; return its stdout."""
        result = subprocess.run(
            [sys.executable, "example/manage.py", *args],
            cwd=REPO_TOP,
            env=example_env(self.redis.url),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stderr}"
        return result.stdout

    def subscribers(self, channel: str) -> int:
        """Return how many connections subscribe to ``channel`` in Redis (one per worker)."""
        with self.redis.client() as client:
            return dict(client.pubsub_numsub(f"sse:{channel}"))[f"sse:{channel}".encode()]


def example_env(redis_url: str) -> dict[str, str]:
    """The environment of the example's processes: its settings, Redis, DEBUG off, collected static files."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "example.settings", "REDIS_URL": redis_url}
    # django_sse from this checkout, whether or not it is installed in the venv.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_TOP), os.environ.get("PYTHONPATH")]))
    # As in production: WhiteNoise serves what collectstatic gathered, and nothing else.
    env["DEBUG"] = "0"
    env["STATIC_ROOT"] = collected_static()
    return env


_collected: list[str] = []


def collected_static() -> str:
    """Run the example's ``collectstatic`` once per test process; return its STATIC_ROOT.

    A directory of this process's own (removed at exit), so that test runs side by
    side, and the checkout's ``example/staticfiles/``, are left alone.
    """
    if not _collected:
        root = tempfile.mkdtemp(prefix="django-sse-example-static-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "example.settings",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_TOP), os.environ.get("PYTHONPATH")])
            ),
            "STATIC_ROOT": root,
        }
        result = subprocess.run(
            [sys.executable, "example/manage.py", "collectstatic", "--noinput"],
            cwd=REPO_TOP,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"collectstatic failed:\n{result.stderr}"
        _collected.append(root)
    return _collected[0]


def serve_example(
    servers, kind: str, redis_url: str, settings: str = "example.settings"
) -> GunicornServer | UvicornServer:
    """Start the example project on ``kind`` ("gunicorn" or "uvicorn"), as its script does.

    gunicorn: ``gunicorn -c gunicorn.conf.py`` (./scripts/example), its access
    log recording the ``Last-Event-ID`` header of every request; uvicorn:
    ``uvicorn example.asgi:application --app-dir example`` (./scripts/example-asgi).
    ``redis_url`` "" is the in-process broker; ``settings`` the settings module
    (a test's variant of the example's, e.g. ``tests.browser.one_stream_settings``).
    """
    env = {
        "DJANGO_SETTINGS_MODULE": settings,
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        # Static files as ./scripts/example serves them: collected, then served by WhiteNoise.
        "STATIC_ROOT": collected_static(),
    }
    if kind == "uvicorn":
        return servers.uvicorn(
            app="example.asgi:application",
            env=env,
            graceful_timeout=10,
            extra_args=["--app-dir", "example"],
        )
    return servers.gunicorn(
        config=REPO_TOP / "gunicorn.conf.py",  # as ./scripts/example serves it
        app="example.wsgi:application",
        env={**env, "SSE_ACCESS_LOG": "-"},
        extra_args=["--access-logformat", '"%(r)s" %(s)s last-event-id=%({last-event-id}i)s'],
    )


def crash(server: GunicornServer | UvicornServer) -> None:
    """SIGKILL the process that serves; see ``Example.crash``."""
    if isinstance(server, UvicornServer):
        server.kill()
        server.start()
        return
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)


@pytest.fixture
def example_kind() -> str:
    """The server ``example`` runs on: gunicorn, unless a conftest.py parametrises this."""
    return "gunicorn"


@pytest.fixture
def example(servers, example_kind) -> Example:
    """The example project on ``example_kind`` (see ``serve_example``) on its own redis-server."""
    redis = servers.redis()
    return Example(redis=redis, server=serve_example(servers, example_kind, redis.url))


@pytest.fixture
def browser(request, output_dir):
    """A factory of headless Chromium sessions; each saves a screenshot of every window at the end.

    Screenshots go to test-output/screenshots/<test>[-<n>].png whether the test
    passed or not, so that a failure can be looked at.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []
    profiles = []

    def open_browser(*arguments: str):
        """Open a session; ``arguments`` are Chromium's, after the usual ones."""
        profile = tempfile.mkdtemp(prefix="django-sse-chromium-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in [*CHROME_ARGUMENTS, f"--user-data-dir={profile}", *arguments]:
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(WAIT)
        drivers.append(driver)
        return driver

    yield open_browser

    screenshots = output_dir / "screenshots"
    screenshots.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    count = 0
    for driver in drivers:
        try:
            for handle in driver.window_handles:
                driver.switch_to.window(handle)
                count += 1
                suffix = "" if count == 1 else f"-{count}"
                driver.save_screenshot(str(screenshots / f"{name}{suffix}.png"))
        finally:
            driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


# --- helpers for the pages ------------------------------------------------------------


def wait_for(driver, condition, timeout=WAIT, message=""):
    """Return ``condition(driver)`` once truthy; fail after ``timeout`` seconds."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def text_of(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def wait_open(driver):
    """Wait until the page's EventSource is open (the header's connection badge)."""
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "connection").get_attribute("data-state") == "open",
        message="the page's EventSource did not open",
    )


def wait_subscribed(example, channel):
    """Wait until the server's worker subscribes ``channel`` in Redis: from then on no event is missed."""
    wait_for(
        None, lambda _: example.subscribers(channel) >= 1, message=f"{channel} never subscribed"
    )


def logged(driver, event_type):
    """Return the events of ``event_type`` that the page received, in order (``window.sseLog``)."""
    return driver.execute_script("return sseLog.filter((e) => e.type === arguments[0])", event_type)
