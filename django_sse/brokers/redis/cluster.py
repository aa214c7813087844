"""The Redis Cluster broker: history in Redis Streams, live events over sharded pub/sub (Redis 7).

``SSE_REDIS_CLUSTER = True`` with ``SSE_REDIS_URL`` naming any node.
Commands (publishing, history, presence) go through redis-py's
``RedisCluster``, which keeps the slot map and follows ``MOVED`` and
``ASK``; it holds at most one connection per node (a blocking pool of
one). Live events come over one subscriber connection per master that owns
a slot of a channel this process listens to (``shard.ShardSubscriber``), the
control channel's included.

Wire format, cluster version 1 (beside version 1 of ``redis.py``, for
publishers in other languages): the stream key and the shard channel of a
channel are both ``<SSE_REDIS_PREFIX>{<channel>}``: the braces are a hash
tag, so both are in one slot and ``publish.lua`` records and announces the
event atomically (``XADD`` then ``SPUBLISH``, the channel declared among its
``KEYS``). Any channel name works: the key and the channel are the same
string, so they share a slot whatever braces the name holds (a name with a
``}`` hashes on the part before it, which only changes where it lives). The
message is the same ``1\\n<id>\\n<event>\\n<data>``. Control messages go to the
shard channel ``<SSE_REDIS_PREFIX>{django-sse control}``; presence uses the
keys of version 1 with the hash tag ``{django-sse presence}``, so its
transaction stays in one slot.

When a shard's connection drops or a channel's slot moves (Redis pushes
``sunsubscribe`` for each of its channels, or answers ``MOVED``), the broker
tells the hub which channels are lost (``on_lost``), refreshes the slot map
and subscribes them again on their current owners, one ``SSUBSCRIBE`` per
slot; the hub catches their streams up from history once each is confirmed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.checks import CheckMessage

from ...conf import Settings
from ...core.concurrency import new_rlock
from ...exceptions import BrokerUnavailable
from ..base import BrokerListener
from .checks import check_cluster, check_connection
from .common import CATCH_UP, FirstContact, RedisBrokerBase, redis_options, script
from .shard import READ_TIMEOUT, ShardSubscriber

logger = logging.getLogger(__name__)


class RedisClusterBroker(RedisBrokerBase):
    """Publishes through a Redis Cluster and feeds the hub from one subscriber connection per shard."""

    publish_command = "SPUBLISH"
    # Placing a channel may make the cluster client (which connects) and asks redis-py's
    # pub/sub of its shard, under locks held across I/O.
    blocking_subscriptions = True
    _publish_args = ("SPUBLISH",)
    _publish_commands = "TIME, XADD, XTRIM, PEXPIRE and SPUBLISH"

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisClusterBroker:
        """Return a broker for the cluster that the node at ``SSE_REDIS_URL`` belongs to."""
        url = settings.redis_url
        if url is None:  # check() reports it (E022 or E046); a caller that skipped it learns here
            raise ValueError("RedisClusterBroker needs SSE_REDIS_URL, a node of the cluster.")
        return cls(url, **redis_options(settings))

    @classmethod
    def check(cls, settings: Settings) -> list[CheckMessage]:
        """Check the connection settings (E021-E024) and SSE_REDIS_CLUSTER's (E045-E049)."""
        return check_connection(settings) + check_cluster(settings)

    def __init__(self, url: str, prefix: str, timeout: float, maxlen: int, ttl: float) -> None:
        from redis.connection import parse_url

        super().__init__(url, prefix, timeout, maxlen, ttl)
        params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._host, self._port = params.pop("host", "localhost"), params.pop("port", 6379)
        params.pop("db", None)
        #: What every connection to a node is made with (but its host and port).
        self._node_params = {
            **params,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        self._client: Any = None  # made on first use: making it connects
        self.control_key = self._key("django-sse control")
        self.presence_key = prefix + "{django-sse presence}"
        #: Guards the client's making, the placement of keys and every shard's fields.
        self.lock = new_rlock()
        self._listener: BrokerListener | None = None
        self._shards: dict[str, ShardSubscriber] = {}
        self._home: dict[str, ShardSubscriber] = {}  # key -> the shard it is placed on
        self._slots: dict[str, int] = {}  # key -> slot, for every key wanted
        self._closed = False
        #: Whether any shard ever connected (a shard's reader records it).
        self.contact = FirstContact()

    # Naming ----------------------------------------------------------------------------

    def _key(self, channel: str) -> str:
        return f"{self.prefix}{{{channel}}}"

    def _channel_of(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) + 1 : -1]

    def _safe_url(self) -> str:
        return f"the cluster of {self._host}:{self._port}"

    def node_params(self, host: str, port: int) -> dict[str, Any]:
        """Return the connection arguments of a subscriber connection to node ``host:port``."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py would reconnect and resubscribe by itself.
        return {**self._node_params, "host": host, "port": port, "retry": Retry(NoBackoff(), 0)}

    def _commands(self) -> Any:
        client = self._client
        if client is not None:
            return client
        import redis
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.exceptions import RedisClusterException
        from redis.retry import Retry

        with self.lock:
            if self._client is None:
                try:
                    client = RedisCluster.from_url(
                        self.url,
                        # No retries: a retried publish could announce an event twice
                        # (redirections are followed, they are not retries).
                        retry=Retry(NoBackoff(), 0),
                        connection_pool_class=redis.BlockingConnectionPool,
                        max_connections=1,
                        timeout=self.timeout,
                        socket_timeout=self.timeout,
                        socket_connect_timeout=self.timeout,
                    )
                except RedisClusterException as exc:
                    raise redis.ConnectionError(str(exc)) from exc
                self._publish = client.register_script(script("publish.lua"))
                self._read = client.register_script(script("read.lua"))
                self._client = client
            return self._client

    def _publishing_pool(self, key: str) -> Any:
        # The pool of the master that holds ``key``'s slot, as the cluster client picks it.
        client = self._commands()
        return client.get_redis_connection(client.get_node_from_key(key)).connection_pool

    def _presence_client(self) -> Any:
        client = self._commands()
        node = client.get_node_from_key(self.presence_key)
        return client.get_redis_connection(node)

    def write_presence(self, process_key: str, report: str, ttl: float) -> None:
        self._following_moved(super().write_presence, process_key, report, ttl)

    def read_presence(self) -> list[str]:
        reports: list[str] = self._following_moved(super().read_presence)
        return reports

    def _following_moved(self, method: Any, *args: Any) -> Any:
        """Call ``method``; when its node answered ``MOVED``, read the slot map again and retry once."""
        from redis.exceptions import MovedError

        try:
            return method(*args)
        except BrokerUnavailable as exc:
            if not isinstance(exc.__cause__, MovedError):
                raise
            self._refreshed()
        return method(*args)

    # The subscribers -------------------------------------------------------------------

    def is_connected(self) -> bool:
        with self.lock:
            return all(shard.connected for shard in self._shards.values())

    def never_reached(self) -> bool:
        return self.contact.never_reached(self.timeout)

    def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        # Subscriptions are the broker's to keep: the hub subscribes what it has now (nothing
        # yet), and learns of every later loss from on_lost.
        listener.on_connected()
        self._want([self.control_key])

    def subscribe(self, channels: list[str]) -> bool:
        self._want([self._key(channel) for channel in channels])
        return True

    def unsubscribe(self, channels: list[str]) -> bool:
        with self.lock:
            by_shard: dict[ShardSubscriber, list[str]] = {}
            for channel in channels:
                key = self._key(channel)
                self._slots.pop(key, None)
                shard = self._home.pop(key, None)
                if shard is not None:
                    by_shard.setdefault(shard, []).append(key)
            for shard, keys in by_shard.items():
                shard.remove(keys)
                if not shard.keys:
                    self._drop_shard(shard)
        return True

    def catch_up_live(self, channel: str, token: str) -> bool:
        # A pong follows every message its connection delivered before it.
        with self.lock:
            shard = self._home.get(self._key(channel))
        return shard is not None and shard.ping(CATCH_UP + token)

    def close(self) -> None:
        self._closed = True
        with self.lock:
            shards = list(self._shards.values())
            self._shards.clear()
            self._home.clear()
            client, self._client = self._client, None
        for shard in shards:
            shard.close()
        for shard in shards:
            shard.join(READ_TIMEOUT + self.timeout)
        if client is not None:
            client.close()

    def _want(self, keys: list[str]) -> None:
        """Place ``keys`` on the shards of their slots' masters, subscribing them there."""
        try:
            client = self._commands()
        except Exception as exc:  # noqa: BLE001 (placed on the URL's node; retried from there)
            logger.debug("No slot map yet (%s): placing on %s:%s", exc, self._host, self._port)
            client = None
        with self.lock:
            if self._closed:
                return
            for key in keys:
                if key not in self._slots:
                    self._slots[key] = _keyslot(key)
            self._place(client, keys)

    def _place(self, client: Any, keys: list[str]) -> None:
        """Under the lock: assign each key to the shard of its slot's master as the map says."""
        by_node: dict[tuple[str, int], dict[str, int]] = {}
        for key in keys:
            slot = self._slots.get(key)
            if slot is None:
                continue  # unsubscribed meanwhile
            by_node.setdefault(self._owner(client, slot), {})[key] = slot
        for (host, port), placed in by_node.items():
            name = f"{host}:{port}"
            shard = self._shards.get(name)
            if shard is None or shard.closed:
                shard = self._shards[name] = ShardSubscriber(self, name, host, port)
            for key in placed:
                self._home[key] = shard
            shard.add(placed)

    def _owner(self, client: Any, slot: int) -> tuple[str, int]:
        if client is not None:
            try:
                node = client.nodes_manager.get_node_from_slot(slot)
                return node.host, node.port
            except Exception as exc:  # noqa: BLE001 (not covered now: the URL's node redirects)
                logger.debug("Slot %d has no known owner: %s", slot, exc)
        return self._host, self._port

    # Called by the shards' readers -----------------------------------------------------

    def lost(self, keys: list[str]) -> None:
        """Tell the listener that ``keys`` (the control channel aside) are not subscribed."""
        channels = [self._channel_of(key.encode()) for key in keys if key != self.control_key]
        if channels and self._listener is not None and not self._closed:
            self._listener.on_lost(channels)

    def relocate(self, shard: ShardSubscriber) -> bool:
        """After ``shard`` lost its connection: refresh the map, move its keys; whether it keeps any."""
        with self.lock:
            keys = list(shard.keys)
        self.lost(keys)
        client = self._refreshed()
        with self.lock:
            if shard.closed or self._closed:
                return False
            keys = list(shard.keys)
            moving = [key for key in keys if self._owner(client, self._slots[key]) != _at(shard)]
            shard.remove(moving, unsubscribe=False)
            self._place(client, moving)
            if shard.keys:
                return True
            self._drop_shard(shard)
            return False

    def slot_moved(self, shard: ShardSubscriber, keys: list[str]) -> None:
        """Redis pushed ``sunsubscribe`` for ``keys``: their slot moved; subscribe them on its new owner."""
        logger.info(
            "Shard %s gave away %d channel(s); following their slot.", shard.name, len(keys)
        )
        self.lost(keys)
        client = self._refreshed()
        self._move(shard, client, keys)

    def moved(self, shard: ShardSubscriber, exc: Any) -> None:
        """An SSUBSCRIBE on ``shard`` was answered ``MOVED``: read the map again, move that slot's keys."""
        with self.lock:
            keys = [key for key, slot in shard.keys.items() if slot == exc.slot_id]
        self.lost(keys)
        client = self._refreshed()
        self._move(shard, client, keys)

    def _move(self, shard: ShardSubscriber, client: Any, keys: list[str]) -> None:
        with self.lock:
            if self._closed:
                return
            keys = [key for key in keys if key in shard.keys]
            shard.remove(keys, unsubscribe=False)
            self._place(client, keys)
            if not shard.keys:
                self._drop_shard(shard)

    def _refreshed(self) -> Any:
        """Return the client with its slot map read again (None when no node answers)."""
        client = self._commands_or_none()
        if client is None:
            return None
        try:
            client.nodes_manager.initialize()
        except Exception as exc:  # noqa: BLE001 (the old map stays; the reader retries)
            logger.debug("Could not refresh the cluster's slot map: %s", exc)
        return client

    def _commands_or_none(self) -> Any:
        try:
            return self._commands()
        except Exception as exc:  # noqa: BLE001 (callers place on the URL's node meanwhile)
            logger.debug("No cluster client: %s", exc)
            return None

    def _drop_shard(self, shard: ShardSubscriber) -> None:
        """Under the lock: close a shard that has no keys left."""
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        shard.close()

    def forget_shard(self, shard: ShardSubscriber) -> None:
        """The reader of ``shard`` ended."""
        with self.lock:
            if self._shards.get(shard.name) is shard:
                del self._shards[shard.name]

    def confirmed(self, key: str) -> None:
        if key != self.control_key and self._listener is not None:
            self._listener.on_subscribed(self._channel_of(key.encode()))

    def deliver(self, key: bytes, payload: bytes) -> None:
        listener = self._listener
        if listener is None:
            return
        if key == self._control_key_bytes:
            listener.on_control(payload.decode("utf-8", "replace"))
            return
        message = self._decode(key, payload)
        if message is not None:
            listener.on_message(message)

    def caught_up(self, token: str) -> None:
        if self._listener is not None:
            self._listener.on_caught_up(token)

    @property
    def _control_key_bytes(self) -> bytes:
        return self.control_key.encode()


def _at(shard: ShardSubscriber) -> tuple[str, int]:
    host, _, port = shard.name.rpartition(":")
    return host, int(port)


def _keyslot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))
