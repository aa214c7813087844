"""Letting go of the request's database connections while a stream is open."""

from __future__ import annotations

from django.db import connections


def release_connections() -> None:
    """Close this thread's (greenlet's) database connections and forget their wrappers.

    A stream lives for hours and needs no database between events; left
    alone, every open stream would hold a connection (even with
    ``CONN_MAX_AGE``) and, under gevent, a connection wrapper per greenlet.
    Anything that needs the database later opens a new connection, as usual.
    """
    for connection in connections.all(initialized_only=True):
        connection.close()
        del connections[connection.alias]
