"""The single-node broker's pub/sub connection, on redis-py's parser (hiredis when installed).

redis-py serves the ordinary commands through its client; this connection
only sends SUBSCRIBE/UNSUBSCRIBE/PING and reads what Redis pushes, straight
from a redis-py ``Connection`` (its ``read_response``). redis-py's
``PubSub`` object is left out on purpose: it would resubscribe by itself
after a reconnect, and its per-message dictionary costs CPU on every
delivery (measured in ``benchmarks/README.rst``, "Receiving a live message").
The pool must speak RESP2 (``protocol=2``): under RESP3 a message is a push
frame, which redis-py hands to its own handlers instead of returning it.

Blocking socket calls only, so gevent (patched sockets) and threads both work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...core.concurrency import new_lock
from .common import take_connection


class SubscriberConnection:
    """One connection of ``pool`` (a redis-py pool of one) held in subscriber mode.

    The pool's ``socket_timeout`` bounds the handshake and each silent read;
    after ``idle_ping`` seconds of silence (counted in such reads) a PING
    goes out, and one more silent read fails the connection
    (``ConnectionError``), so a Redis that went away without a word is
    noticed. Pitfall: ``close()`` from another task breaks a blocked read;
    the reader then sees an error.
    """

    def __init__(self, pool: Any, idle_ping: float) -> None:
        self._pool = pool
        read_timeout = pool.connection_kwargs.get("socket_timeout") or idle_ping
        self._silent_reads_before_ping = max(1, round(idle_ping / read_timeout))
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

    def replies(self) -> Iterator[Any]:
        """Yield every reply as it arrives; PING when idle, fail when Redis is silent.

        Each read blocks on the socket itself (redis-py's ``read_response``):
        no poll before it, which under gevent would cost a watcher per
        message. A burst read in one go is handed over reply after reply
        with no switch to another greenlet between them (redis-py answers
        from its buffer), so the hub fans out the whole burst before streams
        write. An error reply is raised (redis-py's ``ResponseError``): on a
        pub/sub connection it means a command was refused (``NOPERM``).
        """
        import redis

        silent_reads = 0
        while True:
            connection = self._connection
            if connection is None:
                raise redis.ConnectionError("The Redis subscription was closed.")
            try:
                # Kept open on a timeout: nothing was read, the connection is in step.
                reply = connection.read_response(disconnect_on_error=False)
            except redis.TimeoutError:
                silent_reads += 1
                if silent_reads > self._silent_reads_before_ping:
                    raise redis.ConnectionError("Redis did not answer a PING in time.") from None
                if silent_reads == self._silent_reads_before_ping:
                    self.send("PING")
                continue
            silent_reads = 0
            yield reply

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
