"""The single-node broker's pub/sub connection, on redis-py's parser (hiredis when installed).

redis-py serves the ordinary commands through its client; this connection
only sends SUBSCRIBE/UNSUBSCRIBE/PING and reads what Redis pushes, straight
from a redis-py ``Connection`` (its ``can_read`` and ``read_response``),
so that every reply a read brought in is handed over as one batch and the
hub fans out a whole burst before streams write. redis-py's ``PubSub``
object is left out on purpose: it would resubscribe by itself after a
reconnect, and its per-message dictionary costs CPU on every delivery
(measured in ``benchmarks/README.rst``, "Receiving a live message").

Blocking socket calls only, so gevent (patched sockets) and threads both work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...core.concurrency import new_lock
from .common import take_connection


class SubscriberConnection:
    """One connection of ``pool`` (a redis-py pool of one) held in subscriber mode.

    ``idle_ping``: seconds of silence after which a PING is sent; a second
    silence as long fails the connection (``ConnectionError``), so a Redis
    that went away without a word is noticed. Pitfall: ``close()`` from
    another task breaks a blocked read; the reader then sees an error.
    """

    def __init__(self, pool: Any, idle_ping: float) -> None:
        self._pool = pool
        self._idle_ping = idle_ping
        self._connection: Any = None  # None once closed: replies() and send() stop
        self._taken: Any = None  # the pool's connection, disconnected by every close()
        self._released = False
        self._send_lock = new_lock()

    def connect(self) -> None:
        """Connect, authenticate and select the database (a Sentinel's master checks its ROLE).

        Raises redis-py's ``ConnectionError``/``ResponseError`` (or an ``OSError``).
        """
        self._taken = take_connection(self._pool, "SUBSCRIBE")
        self._released = False
        self._connection = self._taken

    def send(self, *args: str | bytes) -> bool:
        """Send one command; return False when not connected."""
        connection = self._connection
        if connection is None:
            return False
        with self._send_lock:
            connection.send_command(*args, check_health=False)
        return True

    def replies(self) -> Iterator[list[Any]]:
        """Yield every batch of replies as it arrives; PING when idle, fail when Redis is silent.

        An error reply is raised (redis-py's ``ResponseError``): on a pub/sub
        connection it means a command was refused (``NOPERM``), and the
        subscription is then not what the hub asked for.
        """
        import redis

        pinged = False
        while True:
            connection = self._connection
            if connection is None:
                raise redis.ConnectionError("The Redis subscription was closed.")
            if not connection.can_read(timeout=self._idle_ping):
                if pinged:
                    raise redis.ConnectionError("Redis did not answer a PING in time.")
                self.send("PING")
                pinged = True
                continue
            pinged = False
            batch = [connection.read_response()]
            while connection.can_read(timeout=0):
                batch.append(connection.read_response())
            yield batch

    def close(self) -> None:
        """Drop the connection (a read blocked on it fails) and give it back to the pool.

        Called again by the reader when its loop ends: a read that raced a
        first close (redis-py reconnects a closed connection on its next
        read) leaves no socket behind.
        """
        self._connection = None
        taken = self._taken
        if taken is not None:
            taken.disconnect()
            if not self._released:
                self._released = True
                self._pool.release(taken)
