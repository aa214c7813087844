"""README.rst: the set-up commands, the links to the docs, the supported versions and the quick start, run.

docs/quickstart.rst includes README's quick start and supported versions;
docs/index.rst, comparison.rst and changelog.rst have no samples of their own,
and are read here so that a sample added to them is flagged. Samples are looked
up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import time

import pytest
from packaging.specifiers import SpecifierSet

from django_sse.conf import DEFAULTS
from tests.browser.fixtures import WAIT
from tests.support.doc_pages import (
    DOCS,
    README,
    all_pages_text,
    commands,
    module_script,
    pages_tested_by,
    render,
)
from tests.support.doc_servers import gunicorn_settings, serving_gunicorn_command
from tests.support.doc_streams import check_send_event_command, named
from tests.support.readme_samples import Samples, track, write_sample
from tests.support.servers import REPO_TOP
from tests.support.sse import SseClient

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

PIP_INSTALL = SAMPLES.find("console", 'pip install "django-sse[redis,gunicorn]"')
QUICK_SETTINGS = SAMPLES.find("python", "# mysite/settings.py (at the end")
CLOCK_VIEW = SAMPLES.find("python", "class ClockView")
QUICK_URLS = SAMPLES.find("python", "# myapp/urls.py")
QUICK_SEND = SAMPLES.find("python", "# anywhere:")
PROJECT_URLS = SAMPLES.find("python", "# mysite/urls.py")
QUICK_TEMPLATE = SAMPLES.find("html+django", "{# myapp/templates/myapp/orders.html #}")
QUICK_PREPARE = SAMPLES.find("console", "manage.py collectstatic")
QUICK_SEND_COMMAND = SAMPLES.find("console", """send_event orders order-shipped '{"id": 7""")
# The deployment guide shows the same command (tests/docs/test_deployment_guide.py).
GUNICORN_COMMAND = SAMPLES.find("console", "$ gunicorn -k gevent")


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
    [hiredis] = re.findall(r"hiredis (\S+) or later", bullets[2])
    assert setup["options.extras_require"]["redis"].split() == [
        f"redis>={redis}",
        f"hiredis>={hiredis}",
    ]

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
def test_quick_start_page_shows_each_tick_and_each_order(example, browser):
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

    with serving_gunicorn_command(argv, tmp_path, worker="gevent") as server:
        with SseClient.connect(server.port, "/blocked/") as blocked:
            [hello] = blocked.read_events(1)
            assert hello.data == "blocked next"
            with SseClient.connect(server.port, "/ticks/?n=3&interval=0.05") as ticks:
                assert [event.data for event in ticks.read_events(3)] == ["0", "1", "2"]


@pytest.mark.integration
def test_send_event_command_sample_publishes_json_to_a_stream(orders_on_redis):
    """`manage.py send_event orders order-shipped '{"id": 7, ...}' --json` prints the id the stream receives."""
    check_send_event_command(QUICK_SEND_COMMAND.code, orders_on_redis)


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
