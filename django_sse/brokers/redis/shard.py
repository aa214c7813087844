"""One shard's subscriber connection for the cluster broker: a redis-py ``PubSub`` and its reader.

The cluster broker holds one ``ShardSubscriber`` per master that owns a
slot of a channel the process listens to. Its task connects, sends one
``SSUBSCRIBE`` per slot (a command naming channels of several slots fails
with ``CROSSSLOT``), and blocks in ``get_message(timeout=...)``, draining
what is buffered into a batch. It never lets redis-py reconnect by itself
(which would resubscribe every channel in one command): on a connection
error, a ``MOVED`` reply or a ``sunsubscribe`` that Redis pushed because a
slot moved, it hands the channels back to the broker (a ``ShardOwner``: ``RedisClusterBroker``),
which tells the hub and places them on their current owners.

Every field but the task's locals is guarded by the broker's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from ...core.concurrency import Task, sleep
from .common import (
    ACL_HINT,
    CATCH_UP,
    CATCH_UP_BYTES,
    SUBSCRIBER_IDLE_PING,
    FirstContact,
    refused_by_acl,
    take_connection,
)

logger = logging.getLogger(__name__)

#: Seconds a reader blocks in one get_message (a thread notices close() within it).
READ_TIMEOUT = 1.0
_IDLE_PING = "django-sse:idle"


class ShardOwner(Protocol):
    """What a shard's reader needs of the broker that placed keys on it (``RedisClusterBroker``).

    Written here so that this module does not import the cluster's: the
    broker imports the shard, never the other way round. Every callback
    runs in the shard's reader task; ``lock`` guards the shard's ``keys``.
    """

    lock: threading.RLock
    contact: FirstContact
    timeout: float

    def node_params(self, host: str, port: int) -> dict[str, Any]:
        """Return the connection keywords for the node at ``host:port``."""

    def lost(self, keys: list[str]) -> None:
        """``keys`` are not subscribed any more (the connection dropped)."""

    def relocate(self, shard: ShardSubscriber) -> bool:
        """``shard`` lost its connection: move its keys where they live now; whether it keeps any."""

    def slot_moved(self, shard: ShardSubscriber, keys: list[str]) -> None:
        """Redis said ``keys``' slot lives on another shard now."""

    def moved(self, shard: ShardSubscriber, exc: Any) -> None:
        """A command of ``shard`` was answered with MOVED (``exc``)."""

    def forget_shard(self, shard: ShardSubscriber) -> None:
        """The reader of ``shard`` ended."""

    def confirmed(self, key: str) -> None:
        """The subscription to ``key`` is confirmed."""

    def deliver(self, key: bytes, payload: bytes) -> None:
        """A message arrived on ``key``."""

    def caught_up(self, token: str) -> None:
        """The catch-up marker ``token`` came back."""


class ShardSubscriber:
    """The subscriber connection to one master: its channels (keys, by slot) and its reader task."""

    def __init__(self, broker: ShardOwner, name: str, host: str, port: int) -> None:
        import redis

        self.name = name
        self._broker = broker
        #: Keys assigned here: key -> slot (the broker places and removes them).
        self.keys: dict[str, int] = {}
        # SUNSUBSCRIBE sent and not yet confirmed, per key (Redis's own pushes are not ours).
        self._unsubscribing: dict[str, int] = {}
        self._pool = redis.ConnectionPool(**broker.node_params(host, port), max_connections=1)
        self._pubsub: Any = None  # set while connected, so commands go out at once
        self.closed = False
        self._reader_ident: int | None = None
        #: This shard's connection succeeded once: a failure now loses a subscription.
        self._reached = False
        self._task = Task(self._run, name=f"django-sse-shard-{name}")

    @property
    def connected(self) -> bool:
        return self._pubsub is not None

    # Called by the broker, under its lock --------------------------------------------

    def add(self, keys: dict[str, int]) -> None:
        """Subscribe ``keys`` (key -> slot) here: now when connected, else once connected."""
        self.keys.update(keys)
        if self._pubsub is not None:
            self._send_by_slot("SSUBSCRIBE", keys)

    def remove(self, keys: Iterable[str], unsubscribe: bool = True) -> None:
        """Stop ``keys`` here (``unsubscribe=False``: they moved, Redis dropped them already)."""
        gone = {key: self.keys.pop(key) for key in keys if key in self.keys}
        if unsubscribe and gone and self._pubsub is not None:
            for key in gone:
                self._unsubscribing[key] = self._unsubscribing.get(key, 0) + 1
            self._send_by_slot("SUNSUBSCRIBE", gone)

    def ping(self, argument: str) -> bool:
        """PING on this connection (its pong follows every message before it); False if not connected."""
        pubsub = self._pubsub
        if pubsub is None:
            return False
        try:
            pubsub.execute_command("PING", argument)
        except Exception as exc:  # noqa: BLE001 (the reader sees the same error and reconnects)
            logger.debug("PING on shard %s failed: %s", self.name, exc)
            return False
        return True

    def close(self) -> None:
        """Stop the reader: a greenlet is killed, a thread's read is broken by closing its socket."""
        self.closed = True
        if threading.get_ident() == self._reader_ident:
            return  # the reader itself: it returns
        self._task.kill()
        pubsub = self._pubsub
        if pubsub is not None and pubsub.connection is not None:
            pubsub.connection.disconnect()  # the reader sees a closed connection, and ends

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the reader to end (its connection closed)."""
        if threading.get_ident() != self._reader_ident:
            self._task.join(timeout)

    def _stopped(self) -> bool:
        """Whether ``close()`` was called (read anew: another task sets it)."""
        return self.closed

    def _send_by_slot(self, command: str, keys: dict[str, int]) -> None:
        """Send ``command`` once per slot: a command must not name keys of several slots."""
        by_slot: dict[int, list[str]] = {}
        for key, slot in keys.items():
            by_slot.setdefault(slot, []).append(key)
        try:
            for slot_keys in by_slot.values():
                self._pubsub.execute_command(command, *slot_keys)
        except Exception as exc:  # noqa: BLE001 (the reader sees the same error and reconnects)
            logger.debug("%s on shard %s failed: %s", command, self.name, exc)

    # The reader -------------------------------------------------------------------------

    def _run(self) -> None:
        import redis

        self._reader_ident = threading.get_ident()
        delay = 0.05
        outage_started: float | None = None
        try:
            while not self.closed:
                pubsub: Any = redis.client.PubSub(self._pool)
                connection: Any = None
                try:
                    # Taken by hand, with no connect callback: redis-py cannot resubscribe.
                    connection = pubsub.connection = take_connection(self._pool, "SSUBSCRIBE")
                    self._reached = True
                    self._broker.contact.succeeded()
                    # Whatever was asked before is confirmed anew from now on (the listener
                    # is never called under the broker's lock: the hub calls in under its own).
                    with self._broker.lock:
                        earlier = list(self.keys)
                    self._broker.lost(earlier)
                    with self._broker.lock:
                        if self._stopped():
                            break
                        keys = dict(self.keys)
                        self._pubsub = pubsub
                        self._unsubscribing.clear()
                        self._send_by_slot("SSUBSCRIBE", keys)
                    if outage_started is not None:
                        logger.info(
                            "Shard %s subscription restored after %.1fs; resubscribed %d channel(s).",
                            self.name,
                            time.monotonic() - outage_started,
                            len(keys),
                        )
                        outage_started = None
                    delay = 0.05
                    self._read(pubsub)
                # ValueError: a send from another thread failed and closed the connection
                # under this read (redis-py's buffer: "I/O operation on closed file").
                except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
                    outage_started = self._lost_connection(exc, outage_started)
                except redis.ResponseError as exc:  # CLUSTERDOWN during a failover, NOPERM
                    if refused_by_acl(exc) and outage_started is None and not self.closed:
                        outage_started = time.monotonic()
                        logger.error(
                            "Redis shard %s refused the subscription (NOPERM): %s %s Retrying with backoff.",
                            self.name,
                            exc,
                            ACL_HINT,
                        )
                    outage_started = self._lost_connection(exc, outage_started)
                finally:
                    with self._broker.lock:
                        self._pubsub = None
                    if connection is not None:
                        connection.disconnect()
                        self._pool.release(connection)
                if self.closed or not self._broker.relocate(self):
                    break  # none of its channels is on this master any more
                sleep(delay)
                delay = min(delay * 2, 1.0)
        finally:
            self._pool.disconnect()
            self._broker.forget_shard(self)

    def _lost_connection(self, exc: Exception, outage_started: float | None) -> float | None:
        if self.closed:
            return outage_started
        self._broker.contact.failed()
        if outage_started is None:
            outage_started = time.monotonic()
            if self._reached:
                logger.warning(
                    "Lost the Redis subscription of shard %s (%s); resubscribing with backoff.",
                    self.name,
                    exc,
                )
            else:
                logger.warning(
                    "Could not reach Redis shard %s (never connected: %s); retrying with backoff.",
                    self.name,
                    exc,
                )
        return outage_started

    def _read(self, pubsub: Any) -> None:
        """Deliver what arrives until the connection fails or the shard closes."""
        import redis

        last_read = time.monotonic()
        pinged: float | None = None
        while not self.closed:
            moved: list[str] = []
            try:
                # redis-py clears it on an sunsubscribe reply when its own bookkeeping (which
                # this reader does not use) is empty; get_message would then read nothing.
                pubsub.subscribed_event.set()
                message = pubsub.get_message(timeout=READ_TIMEOUT)
                while message is not None:
                    last_read, pinged = time.monotonic(), None
                    self._handle(message, moved)
                    pubsub.subscribed_event.set()
                    message = pubsub.get_message(timeout=0.0)  # drain what is buffered
            except redis.exceptions.MovedError as exc:
                # An SSUBSCRIBE reached a master that no longer owns the slot.
                self._broker.moved(self, exc)
            finally:
                if moved:
                    self._broker.slot_moved(self, moved)
            now = time.monotonic()
            if pinged is not None and now - pinged > self._broker.timeout:
                raise redis.TimeoutError(f"No answer to PING within {self._broker.timeout}s.")
            if pinged is None and now - last_read > SUBSCRIBER_IDLE_PING:
                pinged = now
                pubsub.execute_command("PING", _IDLE_PING)

    def _handle(self, message: dict[str, Any], moved: list[str]) -> None:
        kind = message["type"]
        broker = self._broker
        if kind == "smessage":
            broker.deliver(message["channel"], message["data"])
        elif kind == "ssubscribe":
            key = message["channel"].decode()
            with broker.lock:
                ours = key in self.keys
            if ours:
                broker.confirmed(key)
        elif kind == "sunsubscribe":
            key = message["channel"].decode()
            with broker.lock:
                pending = self._unsubscribing.get(key, 0)
                if pending > 1:
                    self._unsubscribing[key] = pending - 1
                elif pending:
                    del self._unsubscribing[key]
                elif key in self.keys:
                    moved.append(key)  # pushed by Redis: the slot moved to another master
        elif kind == "pong":
            data = message["data"]
            if data.startswith(CATCH_UP_BYTES):
                broker.caught_up(data[len(CATCH_UP_BYTES) :].decode())


__all__ = ["CATCH_UP", "ShardSubscriber"]
