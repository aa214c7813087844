"""The Redis broker: history in Redis Streams, live events over pub/sub.

Publishing runs ``publish.lua``, which appends the event to the channel's
stream (``XADD`` with an approximate ``MAXLEN`` and a ``MINID`` age trim) and
``PUBLISH``\\es it in one atomic step, so no subscriber sees an event that
history lacks or the other way round. Each process keeps one pub/sub
connection (``resp.PubSubConnection``) for every channel its streams read,
plus one pooled connection for publishing and history reads: two in all,
however many streams it serves.

Wire format, version 1, for publishers in other languages:
pub/sub channel and stream key are both ``<SSE_REDIS_PREFIX><channel>``; the
message is the UTF-8 text ``1\\n<id>\\n<event>\\n<data>`` where ``<id>`` is the
stream id (empty for events without history).

Presence (see ``django_sse.presence``): each process's JSON report is the
string ``<SSE_REDIS_PREFIX>django-sse presence <host>:<pid>``, expiring
after three intervals, indexed by the sorted set
``<SSE_REDIS_PREFIX>django-sse presence`` (the space keeps both apart from
any channel's keys).
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from ..concurrency import Task, sleep
from ..exceptions import BrokerUnavailable, PublishError
from ..positions import ZERO, Position, format_position, parse_position
from .base import Broker, BrokerListener, GapCause, History, Message
from .resp import PubSubConnection, RespError

if TYPE_CHECKING:
    from .sentinel import SentinelMaster

logger = logging.getLogger(__name__)

WIRE_VERSION = b"1"
#: Said with every refusal for want of an ACL permission.
ACL_HINT = (
    "The Redis user of SSE_REDIS_URL lacks an ACL permission: give it the commands, "
    "keys and channels of the ACL line in django-sse's docs (docs/guides/redis-security.rst); "
    "with Sentinel also +role, with SSE_PUBLISH_REPLICAS +wait (docs/guides/redis-sentinel.rst)."
)
#: The commands publish.lua runs (a refusal inside a script does not name its command).
_PUBLISH_COMMANDS = "TIME, XADD, XTRIM, PEXPIRE and PUBLISH"
#: What starts the argument of a PING that asks for ``on_caught_up`` (the idle PING has none).
_CATCH_UP = "django-sse:caught-up:"
_CATCH_UP_BYTES = _CATCH_UP.encode()
_LARGEST: Position = (2**64 - 1, 2**64 - 1)
#: Seconds past its report's expiry that a process stays in the presence index (clock skew).
_PRESENCE_SLACK = 60.0
#: Seconds the reply of a publish that waits for replicas may take past its WAIT.
_WAIT_GRACE = 1.0


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _position(value: bytes | str) -> Position:
    text = value.decode() if isinstance(value, bytes) else value
    position = parse_position(text)
    if position is None:
        raise BrokerUnavailable(f"Redis returned {text!r}, which is not a stream id.")
    return position


class RedisBroker(Broker):
    """Publishes through Redis and feeds the hub from one pub/sub connection.

    ``master``: where a Sentinel-managed master is (``SSE_REDIS_SENTINELS``);
    then ``url`` gives only the master's credentials, database and TLS, and
    both connections ask ``master`` for its address on every connect.
    ``replicas`` (``SSE_PUBLISH_REPLICAS``): how many replicas must hold an
    event before ``publish`` returns its id (0: none, don't wait).
    """

    shared = True

    def __init__(
        self,
        url: str,
        prefix: str,
        timeout: float,
        maxlen: int,
        ttl: float,
        master: SentinelMaster | None = None,
        replicas: int = 0,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.ttl_ms = int(ttl * 1000) if ttl else 0
        self.timeout = timeout
        self.master = master
        self.replicas = replicas
        self._wait_ms = max(1, int(timeout * 1000))  # WAIT 0 would wait forever
        options: dict[str, Any] = {}
        if master is not None:
            from .sentinel import MasterConnection, SSLMasterConnection

            ssl = url.startswith("rediss://")
            options = {"connection_class": SSLMasterConnection if ssl else MasterConnection}
            options["master"] = master
        # One pooled connection for commands; callers wait for it rather than open more.
        # No retries: a retried publish could announce an event twice.
        self._pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=1,
            timeout=timeout,
            socket_timeout=timeout + (_WAIT_GRACE if replicas else 0),
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._publish = self._client.register_script(_script("publish.lua"))
        self._read = self._client.register_script(_script("read.lua"))
        self._params = _socket_params(url)
        # Whitespace is never in a user's channel name, so this cannot collide with one.
        self.control_key = prefix + "django-sse control"
        self._control_key_bytes = self.control_key.encode()
        #: The sorted set of the processes that report presence (score: time of their last report).
        self.presence_key = prefix + "django-sse presence"
        self._subscriber: PubSubConnection | None = None
        self._listener: BrokerListener | None = None
        self._closed = False
        self._reader: Task | None = None
        #: A channel's subscription was confirmed on the current connection.
        self._confirmed = False

    # Publishing and history ------------------------------------------------

    def publish(self, channel: str, event: str, data: str, history: bool) -> str | None:
        import redis

        key = self.prefix + channel
        try:
            if not history:
                self._client.publish(key, b"1\n\n%s\n%s" % (event.encode(), data.encode()))
                return None
            args: list[str | int] = [key, event, data, self.maxlen, self.ttl_ms]
            if self.replicas:
                return self._publish_replicated(key, args)
            event_id = self._publish(keys=[key], args=args)
        except redis.RedisError as exc:
            if _refused_by_acl(exc):
                raise PublishError(
                    f"Redis at {self._safe_url()} refused to publish: {exc} (publishing runs "
                    f"EVALSHA, SCRIPT LOAD, and in the script {_PUBLISH_COMMANDS}). {ACL_HINT}"
                ) from exc
            raise PublishError(
                f"Could not publish to Redis at {self._safe_url()} within SSE_PUBLISH_TIMEOUT "
                f"({self.timeout}s): {exc}"
            ) from exc
        return event_id.decode()

    def _publish_replicated(self, key: str, args: list[str | int]) -> str:
        """Run the publish script and ``WAIT`` for ``replicas`` in one round trip; return the id.

        Raises ``PublishError`` when fewer replicas confirm within the timeout
        (the event is on the master, and streams may have received it).
        """
        import redis

        for attempt in range(2):
            with self._client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._publish.sha, 1, key, *args)
                pipe.execute_command("WAIT", self.replicas, self._wait_ms)  # type: ignore[no-untyped-call]
                try:
                    event_id, confirmed = pipe.execute()
                except redis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    # A new or restarted master: load the script, then publish (it never ran).
                    self._client.script_load(self._publish.script)
                    continue
            break
        event_id = event_id.decode()
        if confirmed < self.replicas:
            raise PublishError(
                f"Event {event_id} was published on Redis at {self._safe_url()} but only "
                f"{confirmed} of SSE_PUBLISH_REPLICAS={self.replicas} replicas confirmed it "
                f"within SSE_PUBLISH_TIMEOUT ({self.timeout}s): a failover could lose it."
            )
        return cast(str, event_id)

    def publish_control(self, payload: str) -> None:
        import redis

        try:
            self._client.publish(self.control_key, payload.encode())
        except redis.RedisError as exc:
            raise PublishError(f"Could not publish to Redis at {self._safe_url()}: {exc}") from exc

    def read_history(self, channel: str, after: Position | None, limit: int) -> History:
        import redis

        key = self.prefix + channel
        if after == _LARGEST:
            # Nothing can follow the largest id (a client's forged Last-Event-ID), and
            # Redis refuses to read after it: every read would fail and the stream stall.
            tip = self.read_history(channel, None, 0).tip
            return History(gap=True, tip=tip, cause=GapCause.UNKNOWN_POSITION)
        try:
            reply = self._read(
                keys=[key], args=["" if after is None else format_position(after), limit]
            )
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Could not read history from Redis: {exc}") from exc
        if reply[0] == 0:  # no stream: never published, expired, or Redis lost it
            if after is None or after == ZERO:
                return History()
            return History(gap=True, cause=GapCause.HISTORY_LOST)
        _, last, first, added, length, exists, entries = reply
        last = _position(last)
        if after is None:
            return History(tip=last)
        first = _position(first) if first else None
        cause = _lost_after(after, last, first, trimmed=added > length, exists=bool(exists))
        if cause is not None:
            return History(gap=True, tip=last, cause=cause)
        messages = [
            Message(
                channel, fields[b"event"].decode(), fields[b"data"].decode(), _position(entry_id)
            )
            for entry_id, fields in ((entry[0], _fields(entry[1])) for entry in entries)
        ]
        return History(messages=messages, tip=last, more=len(messages) >= limit)

    def read_latest(self, channel: str) -> Message | None:
        import redis

        try:
            entries = self._client.xrevrange(self.prefix + channel, count=1)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Could not read history from Redis: {exc}") from exc
        if not entries:
            return None
        entry_id, fields = cast(tuple[bytes, dict[bytes, bytes]], entries[0])  # raw replies
        return Message(
            channel, fields[b"event"].decode(), fields[b"data"].decode(), _position(entry_id)
        )

    # Presence --------------------------------------------------------------

    def write_presence(self, process_key: str, report: str, ttl: float) -> None:
        # One round trip per process and interval: the report with its expiry, the
        # process's place in the index, and the index's own garbage collection.
        import redis

        now = time.time()
        ttl_ms = max(1, int(ttl * 1000))
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._presence_report_key(process_key), report, px=ttl_ms)
                pipe.zadd(self.presence_key, {process_key: now})
                # Generous: the scores come from every host's clock; read_presence
                # drops a member whose report expired (by Redis's clock) at once.
                pipe.zremrangebyscore(self.presence_key, "-inf", now - ttl - _PRESENCE_SLACK)
                pipe.pexpire(self.presence_key, ttl_ms + int(_PRESENCE_SLACK * 1000))
                pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"Could not write presence to Redis at {self._safe_url()}: {exc}"
            ) from exc

    def read_presence(self) -> list[str]:
        import redis

        try:
            with self._client.pipeline(transaction=True) as pipe:
                # Optimistic: forget expired members only if no process reported meanwhile.
                pipe.watch(self.presence_key)  # type: ignore[no-untyped-call]
                members = cast(list[bytes], pipe.zrange(self.presence_key, 0, -1))
                if not members:
                    return []
                keys = [self._presence_report_key(member.decode()) for member in members]
                reports = cast(list[bytes | None], pipe.mget(keys))
                expired = [m for m, report in zip(members, reports, strict=True) if report is None]
                if expired:
                    pipe.multi()
                    pipe.zrem(self.presence_key, *expired)
                    try:
                        pipe.execute()
                    except redis.WatchError:
                        pass  # a process reported meanwhile: the next read tidies up
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"Could not read presence from Redis at {self._safe_url()}: {exc}"
            ) from exc
        return [report.decode("utf-8", "replace") for report in reports if report is not None]

    def _presence_report_key(self, process_key: str) -> str:
        return f"{self.presence_key} {process_key}"

    def is_connected(self) -> bool:
        return self._subscriber is not None

    # The subscriber --------------------------------------------------------

    def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._reader = Task(self._listen, listener, name="django-sse-redis")

    def subscribe(self, channels: list[str]) -> bool:
        return self._send("SUBSCRIBE", channels)

    def unsubscribe(self, channels: list[str]) -> bool:
        return self._send("UNSUBSCRIBE", channels)

    def catch_up_live(self, token: str) -> bool:
        # Redis answers a PING on the subscriber connection after every message
        # published before it: the pong, carrying the token, follows them.
        return self._send_raw("PING", _CATCH_UP + token)

    def _send(self, command: str, channels: list[str]) -> bool:
        return self._send_raw(command, *(self.prefix + channel for channel in channels))

    def _send_raw(self, *args: str) -> bool:
        subscriber = self._subscriber
        if subscriber is None:
            return False
        try:
            return subscriber.send(*args)
        except OSError:
            return False  # the listener notices, reconnects and resubscribes everything

    def _listen(self, listener: BrokerListener) -> None:
        delay = 0.05
        outage_started = None
        # A subscription refused by the ACL: connecting is no proof it is back, a
        # channel's confirmation is (else every retry would log, without backoff).
        acl_refused = False
        while not self._closed:
            subscriber = PubSubConnection(self._params, self.timeout, idle_timeout=30.0)
            try:
                self._connect_subscriber(subscriber)
                self._subscriber = subscriber
                subscriber.send("SUBSCRIBE", self.control_key)
                self._confirmed = False
                resubscribed = listener.on_connected()
                if not acl_refused:
                    self._log_restored(outage_started, resubscribed)
                    outage_started, delay = None, 0.05
                for replies in subscriber.replies():
                    for reply in replies:
                        self._handle(listener, reply)
                    if acl_refused and self._confirmed:
                        acl_refused = False
                        self._log_restored(outage_started, resubscribed)
                        outage_started, delay = None, 0.05
            except (OSError, RespError) as exc:
                if self._stopped():
                    break
                acl_refused = acl_refused or _refused_by_acl(exc)
                if outage_started is None:
                    outage_started = time.monotonic()
                    if _refused_by_acl(exc):
                        logger.error(
                            "Redis at %s refused the subscription: %s %s Retrying with backoff.",
                            self._safe_url(),
                            exc,
                            ACL_HINT,
                        )
                    else:
                        logger.warning(
                            "Lost the Redis subscription at %s (%s); reconnecting with backoff.",
                            self._safe_url(),
                            exc,
                        )
            finally:
                self._subscriber = None
                subscriber.close()
                if not self._closed:
                    listener.on_disconnected()
            if not self._closed:
                sleep(delay)
                delay = min(delay * 2, 2.0)

    def _connect_subscriber(self, subscriber: PubSubConnection) -> None:
        """Connect ``subscriber``: to the URL's server, or to the master the sentinels name.

        Raises ``OSError`` (``MasterNotFound`` too) or ``RespError``. A Sentinel
        master is asked its ``ROLE`` first: a demoted one would still deliver
        (replicas relay PUBLISH), but only until it is reconfigured.
        """
        master = self.master
        if master is None:
            subscriber.connect()
            return
        address = master.address()
        subscriber.connect(address)
        role = subscriber.request("ROLE")
        if isinstance(role, RespError):  # e.g. NOPERM: the ACL lacks +role
            raise role
        problem = master.role_problem(role, address)
        if problem is not None:
            raise ConnectionError(problem)

    @staticmethod
    def _log_restored(outage_started: float | None, resubscribed: int) -> None:
        """Log the end of an outage, if there was one."""
        if outage_started is not None:
            logger.info(
                "Redis subscription restored after %.1fs; resubscribed %d channel(s).",
                time.monotonic() - outage_started,
                resubscribed,
            )

    def _handle(self, listener: BrokerListener, reply: Any) -> None:
        if isinstance(reply, RespError):
            raise reply
        kind = reply[0]
        if kind == b"message" and reply[1] == self._control_key_bytes:
            listener.on_control(reply[2].decode("utf-8", "replace"))
        elif kind == b"message":
            message = self._decode(reply[1], reply[2])
            if message is not None:
                listener.on_message(message)
        elif kind == b"subscribe" and reply[1] != self._control_key_bytes:
            self._confirmed = True
            listener.on_subscribed(reply[1].decode()[len(self.prefix) :])
        elif kind == b"pong" and reply[1].startswith(_CATCH_UP_BYTES):
            listener.on_caught_up(reply[1][len(_CATCH_UP_BYTES) :].decode())

    def _decode(self, key: bytes, payload: bytes) -> Message | None:
        parts = payload.split(b"\n", 3)
        if len(parts) != 4 or parts[0] != WIRE_VERSION:
            logger.error(
                "Ignoring a message on Redis channel %r in an unknown format (expected version 1: "
                "'1\\n<id>\\n<event>\\n<data>').",
                key,
            )
            return None
        channel = key.decode()[len(self.prefix) :]
        event_id = parts[1].decode() if parts[1] else None
        position = None if event_id is None else parse_position(event_id)
        if event_id is not None and position is None:
            logger.error(
                "Ignoring a message on Redis channel %r with a malformed id %r.", key, event_id
            )
            return None
        text = parts[3].decode("utf-8", "replace")
        return Message(channel, parts[2].decode(), text, position, event_id)

    def _stopped(self) -> bool:
        """Whether ``close()`` was called (read anew: another task sets it)."""
        return self._closed

    def close(self) -> None:
        self._closed = True
        subscriber = self._subscriber
        if subscriber is not None:
            subscriber.close()
        self._pool.disconnect()
        if self.master is not None:
            self.master.close()

    def _safe_url(self) -> str:
        if self.master is not None:
            return self.master.describe()
        params = self._params
        if params.get("path"):
            return f"unix:{params['path']}"
        return f"{params.get('host')}:{params.get('port')}"


def _lost_after(
    after: Position, last: Position, first: Position | None, trimmed: bool, exists: bool
) -> GapCause | None:
    """Return why events after ``after`` are gone or ``after`` was never issued here; None if neither.

    Trimming removes the oldest entries, so every trimmed id is older than the
    first kept one. A position older than that is safe only when nothing was
    ever trimmed and it is ``0-0``; a position within the kept range must be
    an entry of this stream (else it comes from another incarnation of the
    key, e.g. from before a restart that lost the data).
    """
    if after == last:
        return None
    if after > last:  # from the future: another incarnation of the key
        return GapCause.UNKNOWN_POSITION
    if first is None:  # everything after it trimmed
        return GapCause.TRIMMED
    if after < first:
        if trimmed:
            return GapCause.TRIMMED
        return None if after == ZERO else GapCause.UNKNOWN_POSITION
    return None if exists else GapCause.UNKNOWN_POSITION


def _refused_by_acl(exc: Exception) -> bool:
    """Whether Redis refused for want of an ACL permission (also when a script's command was)."""
    text = str(exc)
    return "NOPERM" in text or "no permissions" in text or "can't run this command" in text


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _socket_params(url: str) -> dict[str, Any]:
    from redis.connection import parse_url

    params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    params["ssl"] = url.startswith("rediss://")
    return params
