"""Letting go of the request's database connections while a stream is open."""

from __future__ import annotations

import _thread
from typing import Any

from django.db import connections


def release_connections() -> None:
    """Close this thread's (greenlet's) database connections and forget their wrappers.

    A stream lives for hours and needs no database between events; left
    alone, every open stream would hold a connection (even with
    ``CONN_MAX_AGE``) and, under gevent, a connection wrapper per greenlet.
    Anything that needs the database later opens a new connection, as usual.

    Two kinds of connection are left alone, as Django's test client leaves
    them: one inside an atomic block (the transaction of a ``TestCase``, of
    pytest-django's ``django_db``, or a caller's ``transaction.atomic()``:
    closing it would end that transaction under its owner), and one lent
    by another thread (``allow_thread_sharing``, as ``LiveServerTestCase``
    lends an in-memory SQLite connection to its server's threads).
    """
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block or _lent(connection):
            continue
        connection.close()
        del connections[connection.alias]


def _lent(connection: Any) -> bool:
    """Return whether ``connection`` was opened by another thread that shares it with this one."""
    # Django records the creating thread where it checks sharing (validate_thread_sharing).
    owner = getattr(connection, "_thread_ident", None)
    return bool(connection.allow_thread_sharing) and owner != _thread.get_ident()
