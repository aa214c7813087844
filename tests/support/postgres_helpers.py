"""A real PostgreSQL for the tests: a cluster per test run, on a free loopback port.

``initdb`` and ``postgres`` run as the ``postgres`` system user through
``runuser`` (PostgreSQL refuses to run as root) when the tests run as root,
else as the current user. The cluster lives in a fresh directory, trusts
local connections, and is stopped by PID (SIGINT: PostgreSQL's fast
shutdown; then the process group is killed). ``register_alias()`` makes it a
Django database alias of the test process.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support.servers import Server, ServerError

#: The Django database alias the tests give the cluster's database.
ALIAS = "sse_pg"
DATABASE = "sse"


def postgres_bin(name: str) -> str:
    """Return the path of PostgreSQL's program ``name`` (Debian keeps them out of PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    binary = shutil.which(name)
    if binary is None:
        raise ServerError(f"PostgreSQL's {name} was not found; run scripts/install-system-deps.")
    return binary


def _as_postgres(command: list[str]) -> list[str]:
    """Return ``command`` run as the postgres user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class PostgresServer(Server):
    """A PostgreSQL cluster of its own, made by ``initdb`` on first start; fast and not durable (fsync off)."""

    name = "postgres"
    start_timeout = 30.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(tempfile.mkdtemp(prefix="django-sse-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        self._initialised = False

    def initdb(self) -> None:
        command = [postgres_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        command += ["--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"]
        result = subprocess.run(_as_postgres(command), capture_output=True, text=True, check=False)
        if result.returncode:
            raise ServerError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        self._initialised = True

    def command(self) -> list[str]:
        if not self._initialised:
            self.initdb()
        return _as_postgres(
            [
                postgres_bin("postgres"),
                "-D", str(self.data_dir),
                "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.data_dir}",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=300",
            ]
        )  # fmt: skip

    def ready(self) -> bool:
        try:
            with self.connect(dbname="postgres", connect_timeout=1):
                return True
        except Exception:  # noqa: BLE001 (not up yet, whatever the reason)
            return False

    def connect(self, dbname: str = DATABASE, **kwargs: Any):
        """Return a psycopg connection (autocommit) as the superuser."""
        import psycopg

        options = {"host": "127.0.0.1", "port": self.port, "user": "postgres", **kwargs}
        return psycopg.connect(dbname=dbname, autocommit=True, **options)

    def database_settings(self, name: str = DATABASE) -> dict[str, Any]:
        """Return the ``DATABASES`` entry of database ``name`` on this cluster."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }

    def stop(self, timeout: float = 10.0) -> int | None:
        """Fast shutdown (SIGINT to the group), then the base class's SIGTERM/SIGKILL."""
        if self.process is not None:
            self._signal_group(self.process, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return super().stop(timeout)

    def remove(self) -> None:
        """Delete the cluster's files (once stopped)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)


def create_database(server: PostgresServer, name: str = DATABASE) -> None:
    with server.connect(dbname="postgres") as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def register_alias(settings_dict: dict[str, Any], alias: str = ALIAS) -> None:
    """Add ``alias`` to this process's Django databases (settings and connection handler)."""
    from django.conf import settings
    from django.db import connections

    settings.DATABASES[alias] = dict(settings_dict)
    configured = connections.configure_settings(
        {"default": connections.settings["default"], alias: dict(settings_dict)}
    )
    connections.settings[alias] = configured[alias]
    try:
        del connections[alias]  # this thread's wrapper, made with the old settings
    except AttributeError:
        pass


def migrate(alias: str = ALIAS) -> None:
    from django.core.management import call_command

    call_command("migrate", "django_sse", database=alias, verbosity=0)


def empty_tables(server: PostgresServer, name: str = DATABASE) -> None:
    """Delete every event, trim, presence report and listener (as FLUSHALL does for Redis)."""
    from django_sse.brokers.postgres import schema

    with server.connect(dbname=name) as connection:
        tables = ", ".join((schema.EVENTS, schema.TRIMS, schema.PRESENCE, schema.LISTENERS))
        connection.execute(f"TRUNCATE {tables}")


def site_settings(server: PostgresServer, **extra: Any) -> dict[str, Any]:
    """Return the test project's settings (``project_env(settings=...)``) for the PostgreSQL broker on ``server``."""
    return {
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
            ALIAS: server.database_settings(),
        },
        "SSE_BROKER": "postgres",
        "SSE_POSTGRES_DATABASE": ALIAS,
        "SSE_POSTGRES_POLL_INTERVAL": 0.5,
        "SSE_POSTGRES_CLEANUP_INTERVAL": 0.2,
        **extra,
    }


def use_postgres(settings: Any, alias: str = ALIAS) -> None:
    """Make ``send_event`` in this process publish through the PostgreSQL broker on ``alias``."""
    settings.SSE_BROKER = "postgres"
    settings.SSE_POSTGRES_DATABASE = alias
    settings.SSE_POSTGRES_CLEANUP_INTERVAL = 0.1


class PgBouncerServer(Server):
    """pgbouncer in transaction pooling in front of ``postgres`` (database ``sse``), trusting everyone.

    Run as the postgres user when we are root (pgbouncer refuses root too).
    """

    name = "pgbouncer"

    def __init__(self, postgres: PostgresServer, pool_mode: str = "transaction", **kwargs: Any):
        super().__init__(**kwargs)
        self.postgres = postgres
        self.pool_mode = pool_mode
        self.directory = Path(tempfile.mkdtemp(prefix="django-sse-pgbouncer-"))

    def command(self) -> list[str]:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise ServerError("pgbouncer is not installed; run scripts/install-system-deps.")
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{DATABASE} = host=127.0.0.1 port={self.postgres.port} dbname={DATABASE}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            "max_client_conn = 500\ndefault_pool_size = 10\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.directory, config, self.directory / "users.txt"):
                os.chown(path, user.pw_uid, user.pw_gid)
        return _as_postgres([binary, str(config)])

    def database_settings(self) -> dict[str, Any]:
        """Return the ``DATABASES`` entry of the cluster's database through this pooler."""
        return {**self.postgres.database_settings(), "PORT": str(self.port)}

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
