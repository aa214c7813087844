"""Fixtures that run real servers on free loopback ports and always stop them."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

import django_sse
from tests.support.pushpin import PushpinServer
from tests.support.server_kinds import deselect_disabled_kinds, parametrize_server_kind
from tests.support.servers import (
    DaphneServer,
    GunicornServer,
    Http2AsgiServer,
    Http2GunicornServer,
    PywsgiServer,
    RedisServer,
    RunserverServer,
    SentinelServer,
    Server,
    UvicornServer,
    project_env,
)


def pytest_generate_tests(metafunc) -> None:
    """Run every test that asks for ``server_kind`` once per server (see tests/support/server_kinds.py)."""
    parametrize_server_kind(metafunc)


def pytest_collection_modifyitems(config, items) -> None:
    """Leave out the server kinds ``SSE_TEST_SERVER_KINDS`` does not name (scripts/test's part combinations)."""
    deselect_disabled_kinds(config, items)


def pytest_configure(config) -> None:
    """With DJANGO_SSE_TEST_INSTALLED set (scripts/test), refuse to test anything but the installed wheel."""
    if os.environ.get("DJANGO_SSE_TEST_INSTALLED"):
        where = Path(django_sse.__file__).resolve()
        site = Path(sysconfig.get_paths()["purelib"]).resolve()
        if not where.is_relative_to(site):
            raise pytest.UsageError(
                f"django_sse was imported from {where}, not from the installed package in {site}."
            )


class Servers:
    """Start servers for one test (or module); each is stopped, by PID, at its end.

    ``servers.gunicorn(env={...}, workers=2)`` and friends take the server
    class's arguments and return it started; logs go to the test's tmp_path.
    ``servers.site(redis.url, heartbeat="1", settings={...}, workers=2)`` is
    gunicorn of the test project configured through ``project_env()``.
    """

    def __init__(self, log_dir) -> None:
        self.log_dir = log_dir
        self.started: list[Server] = []

    def redis(self, **kwargs) -> RedisServer:
        return self._start(RedisServer, kwargs)

    def sentinel(self, **kwargs) -> SentinelServer:
        return self._start(SentinelServer, kwargs)

    def gunicorn(self, **kwargs) -> GunicornServer:
        return self._start(GunicornServer, kwargs)

    def gunicorn_h2(self, **kwargs) -> Http2GunicornServer:
        """gunicorn over TLS with HTTP/2 (``--http-protocols h2,h1``); pass ``certificates``."""
        return self._start(Http2GunicornServer, kwargs)

    def asgi_h2(self, kind: str, **kwargs) -> Http2AsgiServer:
        """hypercorn or granian (``kind``) over TLS with HTTP/2; pass ``certificates``."""
        return self._start(Http2AsgiServer, {"kind": kind, **kwargs})

    def pushpin(self, **kwargs) -> PushpinServer:
        """Pushpin with the routes file ``routes`` (see ``tests/support/pushpin.py``)."""
        return self._start(PushpinServer, kwargs)

    def pywsgi(self, **kwargs) -> PywsgiServer:
        return self._start(PywsgiServer, kwargs)

    def runserver(self, **kwargs) -> RunserverServer:
        return self._start(RunserverServer, kwargs)

    def uvicorn(self, **kwargs) -> UvicornServer:
        return self._start(UvicornServer, kwargs)

    def daphne(self, **kwargs) -> DaphneServer:
        return self._start(DaphneServer, kwargs)

    def uvicorn_worker(self, **kwargs) -> GunicornServer:
        """gunicorn with uvicorn's worker class (``-k uvicorn_worker.UvicornWorker``) on the ASGI app."""
        kwargs = {"app": "tests.asgi:application", **kwargs}
        return self.gunicorn(worker_class="uvicorn_worker.UvicornWorker", **kwargs)

    def http(self, kind: str = "gunicorn", **kwargs) -> GunicornServer | UvicornServer:
        """Start the test project on ``kind`` (a ``server_kind``: "gunicorn" or "uvicorn")."""
        if kind == "uvicorn":
            kwargs.pop("worker_class", None)
            return self.uvicorn(**kwargs)
        return self.gunicorn(**kwargs)

    def site(
        self,
        redis_url: str,
        heartbeat: str | None = None,
        settings: dict | None = None,
        env: dict[str, str] | None = None,
        kind: str = "gunicorn",
        **kwargs,
    ) -> GunicornServer | UvicornServer:
        """Start the test project on ``redis_url`` ("" for the memory broker), gunicorn (gevent) by default.

        ``kind`` is a ``server_kind`` ("gunicorn" or "uvicorn").
        """
        env = project_env(redis_url, heartbeat, settings, **(env or {}))
        return self.http(kind, env=env, **kwargs)

    def _start(self, server_class, kwargs):
        server = server_class(**{"log_dir": self.log_dir, **kwargs})
        self.started.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.stop()
            # Captured, so shown only when the test fails.
            print(f"--- {server!r}, last output:\n{server.stderr_text(3000)}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server without persistence, shared by the session; prefer ``redis_url``."""
    server = RedisServer(log_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The URL of the session's redis-server, emptied (FLUSHALL) for this test."""
    if not redis_server.running:  # a previous test stopped or killed it
        redis_server.start()
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def servers(tmp_path):
    """A factory of servers (``servers.gunicorn(...)``) stopped at the end of the test."""
    registry = Servers(tmp_path)
    yield registry
    registry.stop_all()


@pytest.fixture(scope="module")
def module_servers(request, tmp_path_factory):
    """A factory of servers shared by a module's tests, stopped by PID when the module ends.

    For module-scoped fixtures: ``module_servers.site(redis_server.url, workers=2)``.
    """
    registry = Servers(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    yield registry
    registry.stop_all()


@pytest.fixture(scope="session")
def output_dir(request):
    """test-output/ at the top of the repository, for artefacts worth keeping (screenshots)."""
    path = Path(os.environ.get("DJANGO_SSE_TEST_OUTPUT") or request.config.rootpath / "test-output")
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of the session (initdb in a fresh directory), with the broker's tables migrated.

    The database is this process's Django alias ``sse_pg``; prefer ``postgres_alias``.
    """
    from tests.support.postgres_helpers import PostgresServer, create_database, register_alias

    server = PostgresServer()
    server.start()
    try:
        create_database(server)
        register_alias(server.database_settings())
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture
def postgres_alias(postgres_server, django_db_blocker):
    """The alias of the session's PostgreSQL database (migrated), its tables emptied; the database is unblocked."""
    from tests.support.postgres_helpers import ALIAS, empty_tables, migrate

    if not postgres_server.running:  # a previous test stopped or killed it
        postgres_server.start()
    with django_db_blocker.unblock():
        migrate()
        empty_tables(postgres_server)
        yield ALIAS
        from django.db import connections

        connections[ALIAS].close()
