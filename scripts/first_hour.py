"""A pip user's first hour, scripted: README.rst's Quick start followed word for word.

Run by ./scripts/first-hour (which finds Python 3.12 and the wheel):

    python3.12 scripts/first_hour.py dist/django_sse-X-py3-none-any.whl

Every command and file comes from README.rst's own code blocks (looked up as
tests/docs/test_quick_start.py looks them up), so the page cannot drift from what works:
a fresh venv, the Quick start's install line with the wheel in place of the
package name, ``django-admin startproject`` and ``startapp``, the files the
page shows, ``manage.py check``, ``migrate`` and ``collectstatic``, a
redis-server on a free port (the one change to the page: its URL in
``SSE_REDIS_URL``), the gunicorn command as shown (no config file) on a free
port, the page and its ``{% static %}`` client, streams read, and the page's
``manage.py send_event`` delivered. Everything started is stopped by PID; a
failure exits 1 naming its step. Logs stay in test-output/first-hour/.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from tests.support.readme_samples import Samples, write_sample  # noqa: E402  (stdlib only)

README = TOP / "README.rst"
LOGS = TOP / "test-output" / "first-hour"
TIMEOUT = 30.0  # seconds any one wait may take
SHOWN_REDIS_URL = "redis://localhost:6379/0"

SAMPLES = Samples(README)
INSTALL = SAMPLES.find("console", "$ pip install")
SETTINGS = SAMPLES.find("python", "# mysite/settings.py")
VIEWS = SAMPLES.find("python", "# myapp/views.py")
APP_URLS = SAMPLES.find("python", "# myapp/urls.py")
PROJECT_URLS = SAMPLES.find("python", "# mysite/urls.py")
TEMPLATE = SAMPLES.find("html+django", "{# myapp/templates/")
PUBLISH = SAMPLES.find("python", "# anywhere:")
PREPARE = SAMPLES.find("console", "manage.py collectstatic")
SERVE = SAMPLES.find("console", "$ gunicorn -k gevent")
SEND = SAMPLES.find("console", "manage.py send_event")


class StepFailed(Exception):
    pass


def commands(console: str) -> list[list[str]]:
    """The ``$ ...`` lines of a console sample, split as a shell would."""
    return [shlex.split(line[2:]) for line in console.splitlines() if line.startswith("$ ")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    """Poll ``condition()`` until it returns something true; return that, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise StepFailed(f"no {what} within {timeout:.0f} s")


class FirstHour:
    def __init__(self, wheel: Path, work: Path) -> None:
        self.wheel = wheel
        self.work = work
        self.venv = work / "venv"
        self.cwd = work
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.redis_port = free_port()
        self.web_port = free_port()
        # A user's environment: this venv first on the PATH, nothing of this checkout's.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "GUNICORN_CMD_ARGS")
            and not key.startswith("VIRTUAL_ENV")
        }
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env["PYTHONUNBUFFERED"] = "1"

    # --- running things ---------------------------------------------------------------

    def run(self, argv: list[str], log: str, timeout: float = 300) -> str:
        """Run ``argv`` in the project's directory; return its stdout, or fail with its output."""
        with open(LOGS / f"{log}.log", "a") as out:
            out.write(f"$ {shlex.join(argv)}\n")
            out.flush()
            result = subprocess.run(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
            out.write(result.stdout)
        if result.returncode != 0:
            raise StepFailed(
                f"`{shlex.join(argv)}` exited {result.returncode}:\n{result.stdout[-3000:]}"
            )
        return result.stdout

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(LOGS / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append((name, process))

    def alive(self, name: str) -> bool:
        """True while process ``name`` runs; once it has exited, fail with the end of its log."""
        [process] = [process for started, process in self.processes if started == name]
        if process.poll() is None:
            return True
        log = (LOGS / f"{name}.log").read_text(errors="replace").splitlines()
        tail = "\n".join(log[-15:])
        raise StepFailed(f"{name} exited {process.returncode}; the end of its log:\n{tail}")

    def stop_all(self) -> None:
        """Stop what was started, by PID: TERM, then KILL after 15 s."""
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    print(f"first-hour: {name} (pid {process.pid}) ignored TERM; killed")
                    process.kill()
                    process.wait()
        self.processes.clear()

    def bin(self, program: str) -> str:
        return str(self.venv / "bin" / program)

    def user_command(self, argv: list[str]) -> list[str]:
        """A command of the page as the user types it in the venv: ``python``, ``pip``... from it."""
        if argv[0] in ("python", "pip", "django-admin", "gunicorn"):
            return [self.bin(argv[0]), *argv[1:]]
        raise StepFailed(f"the Quick start runs {argv[0]!r}, which this script does not know")

    # --- the steps --------------------------------------------------------------------

    def install(self) -> None:
        """A fresh venv; the Quick start's first commands, the wheel for the package's name."""
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        argvs = commands(INSTALL.code)
        if not argvs or argvs[0][:2] != ["pip", "install"]:
            raise StepFailed(f"the Quick start's first command is not pip install: {argvs}")
        for argv in argvs:
            if argv[:2] == ["pip", "install"]:
                args = [re.sub(r"^django-sse(?=\[|$)", str(self.wheel), arg) for arg in argv[2:]]
                if not any(arg.startswith(str(self.wheel)) for arg in args):
                    raise StepFailed(f"the install line names no django-sse: {argv}")
                self.run([self.bin("python"), "-m", "pip", "install", "-q", *args], "install")
            elif argv[0] == "cd":
                self.cwd = self.cwd / argv[1]
            else:
                self.run(self.user_command(argv), "install")

    def write_files(self) -> None:
        """The files of the page, into the project: settings added to, the others written."""
        settings = SETTINGS.code
        if settings.count(SHOWN_REDIS_URL) != 1:
            raise StepFailed(
                f"the settings sample does not set SSE_REDIS_URL = {SHOWN_REDIS_URL!r}"
            )
        settings = settings.replace(SHOWN_REDIS_URL, f"redis://127.0.0.1:{self.redis_port}/0")
        for code in (settings, VIEWS.code, APP_URLS.code, PROJECT_URLS.code, TEMPLATE.code):
            write_sample(self.cwd, code)

    def check(self) -> None:
        self.run([self.bin("python"), "manage.py", "check", "--fail-level", "WARNING"], "manage")

    def prepare(self) -> None:
        """The page's migrate and collectstatic; the client is then in STATIC_ROOT."""
        for argv in commands(PREPARE.code):
            self.run(self.user_command(argv), "manage")
        if not (self.cwd / "staticfiles" / "django_sse" / "eventsource.js").is_file():
            raise StepFailed("collectstatic did not put django_sse/eventsource.js in STATIC_ROOT")

    def start_redis(self) -> None:
        server = shutil.which("redis-server")
        if not server:
            raise StepFailed("redis-server is not installed (scripts/install-system-deps)")
        self.start(
            "redis-server",
            [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "no"],
        )
        wait_for(lambda: self.alive("redis-server") and self.redis("PING") == "+PONG", "PONG")

    def serve(self) -> None:
        """The page's gunicorn command as shown, no config file, on a free port."""
        [argv] = commands(SERVE.code)
        if argv[0] != "gunicorn":
            raise StepFailed(f"the serving command is not gunicorn: {argv}")
        # A home of its own: gunicorn puts its control socket there, apart from others'.
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
        self.start(
            "gunicorn",
            [*self.user_command(argv), "--bind", f"127.0.0.1:{self.web_port}"],
            env=env,
        )
        wait_for(lambda: self.alive("gunicorn") and self.get("/", quiet=True), "answer on /")

    def page_and_client(self) -> None:
        """The page answers, and so does its {% static %} URL of the browser client (WhiteNoise)."""
        status, _, body = self.get("/")
        if status != 200:
            raise StepFailed(f"GET / answered {status}")
        found = re.search(r'import \{connect\} from "([^"]+)"', body.decode())
        if not found:
            raise StepFailed(f"the page imports no client:\n{body.decode()[:2000]}")
        status, headers, script = self.get(found.group(1))
        content_type = headers.get("Content-Type", "")
        if (
            status != 200
            or "javascript" not in content_type
            or b"export function connect" not in script
        ):
            raise StepFailed(f"GET {found.group(1)} answered {status} {content_type!r}")
        print(f"first-hour: the page loads {found.group(1)}: 200, {content_type}")

    def streams(self) -> None:
        """A tick from the clock; the page's send_event and the Python sample delivered to the streams."""
        with Stream(self.web_port, "/clock/") as clock:
            [tick] = clock.events(1)
            if tick["event"] != "tick" or abs(float(tick["data"]) - time.time()) > 60:
                raise StepFailed(f"the clock sent {tick}")
        with Stream(self.web_port, "/orders/events/") as orders:
            with Stream(self.web_port, "/dashboard/events/") as dashboard:
                # One subscription per worker process and channel, whatever the streams.
                for channel in ("orders", "stock"):
                    wait_for(
                        lambda channel=channel: self.subscribers(channel) >= 1,
                        f"subscription to {channel!r} in Redis",
                    )
                [argv] = commands(SEND.code)
                printed = self.run(self.user_command(argv), "manage").strip()
                data = json.loads(argv[argv.index("send_event") + 3])
                for stream in (orders, dashboard):
                    [event] = stream.events(1)
                    got = (event["event"], json.loads(event["data"]))
                    # A stream of several channels sends a position in each (its id holds all).
                    if got != ("order-shipped", data) or printed not in event.get("id", ""):
                        raise StepFailed(f"{stream.path} received {event}, not {data} {printed}")
                print(f"first-hour: `{shlex.join(argv)}` delivered event {printed}")
                # The Python sample, from another process: manage.py shell.
                self.run([self.bin("python"), "manage.py", "shell", "-c", PUBLISH.code], "manage")
                for stream in (orders, dashboard):
                    [event] = stream.events(1)
                    if event["event"] != "order-shipped" or json.loads(event["data"])["id"] != 42:
                        raise StepFailed(f"{stream.path} received {event} after send_event()")

    # --- helpers ----------------------------------------------------------------------

    def get(self, path: str, quiet: bool = False):
        """GET ``path`` from gunicorn: (status, headers, body); None if it does not answer and ``quiet``."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()
        except OSError:
            if quiet:
                return None
            raise

    def redis(self, *words: str) -> str:
        """Send one command to the redis-server; return its first reply line."""
        command = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as sock:
                sock.sendall(command.encode())
                return sock.recv(65536).decode().split("\r\n")[0]
        except OSError:
            return ""

    def subscribers(self, channel: str) -> int:
        """How many connections subscribe to the channel in Redis (django-sse's ``sse:`` prefix)."""
        key = f"sse:{channel}"
        command = f"*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${len(key)}\r\n{key}\r\n"
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as sock:
            sock.sendall(command.encode())
            reply = sock.recv(65536).decode()
        return int(re.findall(r":(\d+)\r\n", reply)[-1])


class Stream:
    """One event stream read over a raw socket (chunked HTTP/1.1), events parsed as a browser does."""

    def __init__(self, port: int, path: str) -> None:
        self.path = path
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.buffer = b""
        self.body = b""
        self.pending: list[dict[str, str]] = []
        head = self._read_until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise StepFailed(f"GET {path} answered {head[:200]!r}")
        self._read_chunk()  # the opening chunk: the stream is attached to its channels

    def _receive(self) -> None:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise StepFailed(f"{self.path}: nothing received for {TIMEOUT:.0f} s") from None
        if not data:
            raise StepFailed(f"{self.path}: the server closed the stream")
        self.buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read_chunk(self) -> None:
        """Read one chunk of the response; parse the events it completes."""
        size = int(self._read_until(b"\r\n").split(b";")[0], 16)
        while len(self.buffer) < size + 2:
            self._receive()
        self.body += self.buffer[:size]
        self.buffer = self.buffer[size + 2 :]
        while b"\n\n" in self.body:
            block, self.body = self.body.split(b"\n\n", 1)
            event: dict[str, str] = {}
            for line in block.decode().split("\n"):
                field, _, value = line.partition(":")
                if field in ("event", "data", "id"):
                    event[field] = value[1:] if value.startswith(" ") else value
            if "data" in event:  # comments (heartbeats) and retry hints are not events
                event.setdefault("event", "message")
                self.pending.append(event)

    def events(self, n: int) -> list[dict[str, str]]:
        """The next ``n`` events, or fail when nothing comes for TIMEOUT seconds."""
        while len(self.pending) < n:
            self._read_chunk()
        taken, self.pending = self.pending[:n], self.pending[n:]
        return taken

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def main() -> int:
    wheel = Path(sys.argv[1]).resolve()
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="django-sse-first-hour-"))
    hour = FirstHour(wheel, work)
    steps = [
        ("a fresh venv, the Quick start's install line and startproject", hour.install),
        ("the Quick start's files written into the project", hour.write_files),
        ("manage.py check", hour.check),
        ("migrate and collectstatic", hour.prepare),
        ("redis-server on a free port", hour.start_redis),
        ("gunicorn -k gevent, no config file", hour.serve),
        ("the page and its {% static %} browser client", hour.page_and_client),
        ("streams read, send_event delivered", hour.streams),
    ]
    started = time.monotonic()
    try:
        for number, (name, step) in enumerate(steps, 1):
            step_started = time.monotonic()
            try:
                step()
            except (StepFailed, subprocess.SubprocessError, OSError, ValueError) as error:
                print(f"first-hour: FAILED at step {number}, {name}: {error}", file=sys.stderr)
                print(f"first-hour: logs in {LOGS.relative_to(TOP)}/", file=sys.stderr)
                return 1
            print(f"first-hour: {number}. {name}: ok ({time.monotonic() - step_started:.1f} s)")
    finally:
        hour.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(f"first-hour: passed in {time.monotonic() - started:.0f} s ({wheel.name}, Python 3.12)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
