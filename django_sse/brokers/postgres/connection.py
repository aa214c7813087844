"""The broker's own psycopg connections: where they go, and one shared by its callers.

Publishing runs on Django's connection of the calling thread (so that it
joins the caller's transaction); everything else (history, presence,
control messages, the cleaner) shares one connection of the broker's,
in autocommit, and the listener has one of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ...exceptions import BrokerUnavailable

T = TypeVar("T")

#: Keys of a Django database's OPTIONS that are Django's, not libpq's.
_DJANGO_OPTIONS = frozenset(
    ("isolation_level", "server_side_binding", "pool", "assume_role", "cursor_factory", "context")
)


def connection_params(settings_dict: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Return psycopg's ``connect()`` keywords for a Django ``DATABASES`` entry.

    ``timeout`` bounds connecting and, through TCP keepalives and
    ``tcp_user_timeout``, how long a peer that went away unannounced goes unnoticed.
    """
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME") or "postgres",
        "connect_timeout": max(1, round(timeout)),
        "keepalives": 1,
        "keepalives_idle": max(1, round(timeout)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": int(timeout * 1000),
        "application_name": "django-sse",
    }
    for key, name in (
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if settings_dict.get(key):
            params[name] = str(settings_dict[key])
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key not in _DJANGO_OPTIONS:
            params[key] = value
    return params


def describe(params: dict[str, Any]) -> str:
    """Return where ``params`` connect, without credentials, for log lines and errors."""
    host = params.get("host") or "localhost"
    return f"PostgreSQL at {host}:{params.get('port') or 5432}/{params.get('dbname')}"


def connect(params: dict[str, Any]) -> Any:
    """Return a new psycopg connection in autocommit; raises ``psycopg.Error``.

    Nothing is prepared on the server (``prepare_threshold=None``): a
    statement prepared on one server connection of a pooler in transaction
    mode (PgBouncer) is unknown to the next.
    """
    import psycopg

    return psycopg.connect(autocommit=True, prepare_threshold=None, **params)


class SharedConnection:
    """One connection, opened on first use and again after it failed, used by one caller at a time.

    ``run(work)`` calls ``work(connection)`` under a lock and returns its
    result; a ``psycopg.Error`` closes the connection (the next call opens
    a new one) and is raised as ``BrokerUnavailable`` naming ``what``.
    Pitfall: the lock is held across the round trip, so callers queue for it.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self._connection: Any = None
        self._lock = threading.Lock()

    def run(self, what: str, work: Callable[[Any], T]) -> T:
        import psycopg

        with self._lock:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = connect(self.params)
                return work(self._connection)
            except psycopg.Error as exc:
                self._discard()
                raise BrokerUnavailable(
                    f"Could not {what} on {describe(self.params)}: {exc}"
                ) from exc

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            self._discard()
