"""Running the docs' server command lines and programs on the test project, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import re
import sys

from tests.support.servers import REPO_TOP, GunicornServer, HttpServer


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
    """A documented gunicorn command line, run on the test project: this venv, tests.wsgi, a free loopback port."""
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


class CommandLineGunicorn(GunicornServer):
    """gunicorn started with the command line ``argv(port)``."""

    def __init__(self, argv, **kwargs):
        super().__init__(**kwargs)
        self.argv = argv

    def command(self) -> list[str]:
        return self.argv(self.port)


class PythonProgram(HttpServer):
    """A documented program (a Python file) serving the test project."""

    name = "docs-program"

    def __init__(self, path, env: dict[str, str] | None = None, **kwargs):
        pythonpath = os.pathsep.join(filter(None, [str(REPO_TOP), os.environ.get("PYTHONPATH")]))
        super().__init__(env={"PYTHONPATH": pythonpath, **(env or {})}, **kwargs)
        self.path = path

    def command(self) -> list[str]:
        return [sys.executable, str(self.path)]


def warnings_logged(server) -> list[str]:
    """The django_sse check ids (W00n, E0nn) a server logged."""
    return re.findall(r"django_sse\.[EW]\d{3}", server.stderr_text(100_000))


@contextlib.contextmanager
def serving_gunicorn_command(argv: list[str], log_dir, worker: str):
    """Run a documented gunicorn command; once the block is done, its log names ``worker``, no warning."""
    server = CommandLineGunicorn(lambda port: runnable_gunicorn(argv, port), log_dir=log_dir)
    server.start()
    try:
        yield server
        log = server.stderr_text(100_000)
        assert f"Using worker: {worker}" in log
        assert warnings_logged(server) == [], log
    finally:
        server.stop()
