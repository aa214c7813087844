"""docs/guides/deployment.rst: every way of serving it shows, started as the page says and stopped as a platform does.

The gunicorn commands, gunicorn.conf.py, the Dockerfile, the systemd unit, the
Procfile, the pywsgi program and the nginx location. docs/guides/scaling.rst and
troubleshooting.rst have no samples of their own, and are read here so that a
sample added to them is flagged. Samples are looked up by a marker they contain
(tests/support/readme_samples.py); ``test_every_sample_is_exercised``, the last
test, fails for any sample that no passing test read.
"""

from __future__ import annotations

import ast
import configparser
import inspect
import json
import os
import re
import runpy
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import types

import pytest

from django_sse.conf import DEFAULTS
from tests.support.doc_pages import README, all_pages_text, commands, pages_tested_by
from tests.support.doc_servers import (
    CommandLineGunicorn,
    PythonProgram,
    gunicorn_settings,
    runnable_gunicorn,
    serving_gunicorn_command,
    warnings_logged,
)
from tests.support.doc_streams import TIMEOUT, Events, RawStream, ends_cleanly
from tests.support.polling import eventually
from tests.support.procfs import exited
from tests.support.readme_samples import Samples, read_blocks, track
from tests.support.servers import REPO_TOP
from tests.support.sse import SseClient

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

WORKER_COMMAND = SAMPLES.find("console", "-k django_sse.worker.GeventWorker")
# The quick start's command, repeated (tests/docs/test_quick_start.py runs it).
GUNICORN_COMMAND = SAMPLES.find("console", "$ gunicorn -k gevent")
GUNICORN_CONF = SAMPLES.find("python", "# gunicorn.conf.py")
DOCKERFILE = SAMPLES.find("dockerfile", "CMD [")
SYSTEMD_UNIT = SAMPLES.find("ini", "[Service]")
PROCFILE = SAMPLES.find("text", "web: gunicorn")
PYWSGI_PROGRAM = SAMPLES.find("python", "stop_gracefully")
NGINX = SAMPLES.find("nginx", "proxy_buffering off")


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

    with serving_gunicorn_command(
        argv, tmp_path, worker="django_sse.worker.GeventWorker"
    ) as server:
        with SseClient.connect(server.port, "/ticks/?n=3&interval=0.05") as ticks:
            assert [event.data for event in ticks.read_events(3)] == ["0", "1", "2"]


def test_gunicorn_command_is_the_quick_starts():
    """The page's gunicorn command is README's, word for word (tests/docs/test_quick_start.py runs that one)."""
    in_readme = [
        block.code
        for block in read_blocks(README.read_text(encoding="utf-8"))
        if block.language == "console" and "$ gunicorn -k gevent" in block.code
    ]
    assert in_readme == [GUNICORN_COMMAND.code]


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
    """The sample's values are gunicorn.conf.py's; neither has a hook or imports django_sse; it serves, warning-free."""
    for name in (
        "SSE_WORKER_CONNECTIONS",
        "SSE_GRACEFUL_TIMEOUT",
        "SSE_WORKERS",
        "SSE_WORKER_CLASS",
    ):
        monkeypatch.delenv(name, raising=False)  # the file's defaults, as the page shows them
    code = GUNICORN_CONF.code
    path = REPO_TOP / "gunicorn.conf.py"
    shown: dict = {}
    exec(compile(code, "<deployment.rst gunicorn.conf.py>", "exec"), shown)
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

    assert "post_worker_init" not in shown and "post_worker_init" not in actual
    assert django_sse_imports(code) == django_sse_imports(path.read_text()) == []

    # And `gunicorn -c gunicorn.conf.py mysite.wsgi` serves streams, with no django_sse warning.
    argv = ["gunicorn", "-c", "gunicorn.conf.py", "mysite.wsgi"]
    assert " ".join(argv) in all_pages_text().replace("\n", " ")
    server = CommandLineGunicorn(lambda port: runnable_gunicorn(argv, port), log_dir=tmp_path)
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
    server = CommandLineGunicorn(
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
        eventually(lambda: exited(old_worker), what="exit of the old worker")
        [new_worker] = eventually(
            lambda: [pid for pid in server.worker_pids() if pid != old_worker]
        )
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


def pywsgi_program(tmp_path, env: dict[str, str] | None = None) -> PythonProgram:
    """The page's serve.py, written for the test project on a free loopback port (not started)."""
    program = PythonProgram(tmp_path / "serve.py", env=env, log_dir=tmp_path)
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
        eventually(lambda: "Ending 1 stream(s)" in server.stderr_text(), what="the streams' end")
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


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
