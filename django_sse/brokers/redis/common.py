"""What the Redis brokers share: the wire format, history, presence, errors.

``RedisBroker`` (one server) and ``RedisClusterBroker`` (a cluster, with
sharded pub/sub) publish, read history and keep presence the same way,
through ``RedisBrokerBase``; they differ in how keys and channels are named
(``_key``), in the command that announces an event (``publish_command``)
and in their subscribers. The wire formats are in each broker's docstring
and in docs/reference/wire-format.rst.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import threading
import time
from importlib import resources
from typing import Any, TypedDict, cast

from ...conf import Settings
from ...core.positions import ZERO, Position, format_position, parse_position
from ...exceptions import BrokerUnavailable, PublishError, PublishOutcomeUnknown, PublishRefused
from ..base import Broker, GapCause, History, Message

#: Seconds of silence after which the subscriber PINGs Redis; as long again with no answer
#: and it reconnects. A host cut off from Redis without a reset (a switch or a link down)
#: so notices within 10 s and resubscribes soon after the link returns, its streams
#: catching up from history; left to TCP, the events held back during the cut arrive only
#: at Redis's next retransmission, which backs off to tens of seconds after a long cut.
#: Pitfall: a Redis that answers nothing for this long (a long script) counts as lost too.
SUBSCRIBER_IDLE_PING = 5.0

logger = logging.getLogger(__name__)

WIRE_VERSION = b"1"
#: Said with every refusal for want of an ACL permission.
ACL_HINT = (
    "The Redis user of SSE_REDIS_URL lacks an ACL permission: give it the commands, "
    "keys and channels of the ACL line in django-sse's docs (docs/guides/redis-security.rst); "
    "with Sentinel also +role, with SSE_PUBLISH_REPLICAS +wait (docs/guides/redis-sentinel.rst)."
)
#: What starts the argument of a PING that asks for ``on_caught_up`` (the idle PING has none).
CATCH_UP = "django-sse:caught-up:"
CATCH_UP_BYTES = CATCH_UP.encode()
_LARGEST: Position = (2**64 - 1, 2**64 - 1)
#: Seconds past its report's expiry that a process stays in the presence index (clock skew).
_PRESENCE_SLACK = 60.0


class FirstContact:
    """Whether a broker's subscriber has ever reached Redis: for its log lines and ``never_reached()``.

    Until the first success a failure is "could not reach", never "lost".
    Called from the subscriber's task; read from any thread or greenlet.
    """

    def __init__(self) -> None:
        self.reached = False
        self._tried = threading.Event()

    def succeeded(self) -> bool:
        """Record a connection; return whether it is the first."""
        first = not self.reached
        self.reached = True
        self._tried.set()
        return first

    def failed(self) -> None:
        """Record a failed attempt."""
        self._tried.set()

    def never_reached(self, wait: float) -> bool:
        """Whether an attempt failed and none ever succeeded; first wait at most ``wait`` s for one."""
        if not self._tried.is_set():
            self._tried.wait(wait)
        return self._tried.is_set() and not self.reached


def script(name: str) -> str:
    """Return the text of one of the package's Lua scripts."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class RedisOptions(TypedDict):
    """What every Redis broker is built with besides its URL (``redis_options()``)."""

    prefix: str
    timeout: float
    maxlen: int
    ttl: float


def redis_options(settings: Settings) -> RedisOptions:
    """Return the options every Redis broker's ``from_settings()`` passes: prefix, timeout, history bounds."""
    return RedisOptions(
        prefix=settings.SSE_REDIS_PREFIX,
        timeout=settings.SSE_PUBLISH_TIMEOUT,
        maxlen=settings.SSE_HISTORY_MAXLEN,
        ttl=settings.SSE_HISTORY_TTL,
    )


class RedisBrokerBase(Broker):
    """Publishing, history and presence over a redis-py client (``redis.Redis`` or ``RedisCluster``).

    A subclass sets, in ``__init__`` after this one's: ``_client``,
    ``_publish`` and ``_read`` (the two scripts, registered on ``_client``),
    ``control_key`` and ``presence_key``; and overrides ``_key`` /
    ``_channel_of`` when it names keys otherwise.
    """

    shared = True
    #: The command that announces an event (a cluster's is ``SPUBLISH``).
    publish_command = "PUBLISH"
    #: Extra arguments of publish.lua (none: the single-server format, ``PUBLISH``).
    _publish_args: tuple[str, ...] = ()
    #: What publish.lua runs (a refusal inside a script does not name its command).
    _publish_commands = "XREVRANGE, TIME, XADD, XTRIM, PEXPIRE and PUBLISH"

    control_key: str
    presence_key: str
    _client: Any
    _publish: Any
    _read: Any

    def __init__(self, url: str, prefix: str, timeout: float, maxlen: int, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.ttl_ms = int(ttl * 1000) if ttl else 0
        self.timeout = timeout

    def _key(self, channel: str) -> str:
        """Return the stream key and pub/sub channel of ``channel`` (default: prefix + name)."""
        return self.prefix + channel

    def _channel_of(self, key: bytes) -> str:
        """Return the channel name of the pub/sub channel ``key`` (the inverse of ``_key``)."""
        return key.decode()[len(self.prefix) :]

    def _safe_url(self) -> str:
        """Return where Redis is, without credentials, for error messages."""
        raise NotImplementedError

    def _presence_client(self) -> Any:
        """Return the client that runs presence's transactions (default: ``_commands()``).

        A cluster's is the client of the master of the presence keys' slot
        (a transaction runs on one node; not every redis-py has cluster ones).
        """
        return self._commands()

    def _commands(self) -> Any:
        """Return the redis-py client of commands, with ``_publish`` and ``_read`` registered on it.

        The default is ``_client``; a cluster broker makes it on first use
        (making it connects) and raises a ``redis.ConnectionError`` when it cannot.
        """
        return self._client

    def _publishing_pool(self, key: str) -> Any:
        """Return the redis-py connection pool that commands on ``key`` use (default: the client's)."""
        return self._commands().connection_pool

    def ping(self) -> None:
        try:
            self._commands().ping()
        except redis_errors() as exc:
            raise BrokerUnavailable(f"Redis at {self._safe_url()} did not answer: {exc}") from exc

    # Publishing and history ------------------------------------------------

    def publish(self, channel: str, event: str, data: str, history: bool) -> str | None:
        return self._publish_event(channel, event, data, history)[0]

    def publish_in_sequence(self, channel: str, event: str, data: str) -> tuple[str, str]:
        event_id, previous = self._publish_event(channel, event, data, True)
        assert event_id is not None and previous is not None  # with history, both
        return event_id, previous

    def _publish_event(
        self, channel: str, event: str, data: str, history: bool
    ) -> tuple[str | None, str | None]:
        """Publish; return the event's id and the id before it (both None without history)."""
        key = self._key(channel)
        started = time.monotonic()
        try:
            self._connect_publisher(key)
        except redis_errors() as exc:
            raise self._publish_error(exc, sent=False, started=started) from exc
        try:
            if not history:
                payload = b"1\n\n%s\n%s" % (event.encode(), data.encode())
                self._commands().execute_command(self.publish_command, key, payload)
                return None, None
            args: list[str | int] = [key, event, data, self.maxlen, self.ttl_ms]
            event_id, previous = self._run_publish(key, [*args, *self._publish_args])
        except redis_errors() as exc:
            raise self._publish_error(exc, sent=True, started=started) from exc
        return event_id.decode(), previous.decode()

    def _connect_publisher(self, key: str) -> None:
        """Open (or check) the connection that publishes to ``key``, sending no command of ours.

        A redis-py error here means the event was never sent: connecting,
        authenticating, a Sentinel's answer or the pool's wait failed.
        """
        pool = self._publishing_pool(key)
        pool.release(take_connection(pool, "EVALSHA"))

    def _publish_error(self, exc: Exception, sent: bool, started: float) -> PublishError:
        """Return the ``PublishError`` for redis-py's ``exc``: refused, or outcome unknown.

        ``sent``: whether the event's command may have reached Redis. It was
        not published when it was never sent, or when Redis answered with an
        error that wrote nothing (see ``wrote_nothing``); else its outcome is
        unknown (a timeout, a connection lost: Redis may run it all the same).
        ``started``: when the publish began (``time.monotonic()``); the message
        says how long it took to fail, which a refusal does at once.
        """
        refused = not sent or wrote_nothing(exc)
        kind = PublishRefused if refused else PublishOutcomeUnknown
        if refused_by_acl(exc):
            return kind(
                f"Redis at {self._safe_url()} refused to publish: {exc} (publishing runs "
                f"EVALSHA, SCRIPT LOAD, and in the script {self._publish_commands}). {ACL_HINT}"
            )
        outcome = "nothing was published" if refused else "the event may have been published"
        return kind(
            f"Could not publish to Redis at {self._safe_url()}, {outcome}: {exc} "
            f"(failed after {time.monotonic() - started:.2f}s; SSE_PUBLISH_TIMEOUT is "
            f"{self.timeout}s)"
        )

    def _run_publish(self, key: str, args: list[str | int]) -> list[bytes]:
        """Run publish.lua for ``key``; return the new event's id and the one before it (override to add a step)."""
        self._commands()
        return cast(list[bytes], self._publish(keys=[key], args=args))

    def publish_control(self, payload: str) -> None:

        try:
            self._connect_publisher(self.control_key)
        except redis_errors() as exc:
            raise PublishRefused(
                f"Could not publish to Redis at {self._safe_url()}: {exc}"
            ) from exc
        try:
            self._commands().execute_command(
                self.publish_command, self.control_key, payload.encode()
            )
        except redis_errors() as exc:
            kind = PublishRefused if wrote_nothing(exc) else PublishOutcomeUnknown
            raise kind(f"Could not publish to Redis at {self._safe_url()}: {exc}") from exc

    def read_history(
        self, channel: str, after: Position | None, limit: int, max_bytes: int | None = None
    ) -> History:

        key = self._key(channel)
        if after == _LARGEST:
            # Nothing can follow the largest id (a client's forged Last-Event-ID), and
            # Redis refuses to read after it: every read would fail and the stream stall.
            tip = self.read_history(channel, None, 0).tip
            return History(gap=True, tip=tip, cause=GapCause.UNKNOWN_POSITION)
        try:
            self._commands()
            start = "" if after is None else format_position(after)
            reply = self._read(keys=[key], args=[start, limit, max_bytes or 0])
        except redis_errors() as exc:
            raise BrokerUnavailable(f"Could not read history from Redis: {exc}") from exc
        if reply[0] == 0:  # no stream: never published, expired, or Redis lost it
            if after is None or after == ZERO:
                return History()
            return History(gap=True, cause=GapCause.HISTORY_LOST)
        _, last, first, added, length, exists, entries, cut = reply
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
        return History(messages=messages, tip=last, more=bool(cut) or len(messages) >= limit)

    def read_latest(self, channel: str) -> Message | None:

        try:
            entries = self._commands().xrevrange(self._key(channel), count=1)
        except redis_errors() as exc:
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

        now = time.time()
        ttl_ms = max(1, int(ttl * 1000))
        try:
            with self._presence_client().pipeline(transaction=True) as pipe:
                pipe.set(self._presence_report_key(process_key), report, px=ttl_ms)
                pipe.zadd(self.presence_key, {process_key: now})
                # Generous: the scores come from every host's clock; read_presence
                # drops a member whose report expired (by Redis's clock) at once.
                pipe.zremrangebyscore(self.presence_key, "-inf", now - ttl - _PRESENCE_SLACK)
                pipe.pexpire(self.presence_key, ttl_ms + int(_PRESENCE_SLACK * 1000))
                pipe.execute()
        except redis_errors() as exc:
            raise BrokerUnavailable(
                f"Could not write presence to Redis at {self._safe_url()}: {exc}"
            ) from exc

    def read_presence(self) -> list[str]:
        import redis

        try:
            with self._presence_client().pipeline(transaction=True) as pipe:
                # Optimistic: forget expired members only if no process reported meanwhile.
                pipe.watch(self.presence_key)
                members = cast(list[bytes], pipe.zrange(self.presence_key, 0, -1))
                if not members:
                    return []
                keys = [self._presence_report_key(member.decode()) for member in members]
                # As a command, not mget(): a cluster pipeline refuses mget() (all keys share a slot).
                reports = cast(list[bytes | None], pipe.execute_command("MGET", *keys))
                expired = [m for m, report in zip(members, reports, strict=True) if report is None]
                if expired:
                    pipe.multi()
                    pipe.zrem(self.presence_key, *expired)
                    try:
                        pipe.execute()
                    except redis.WatchError:
                        pass  # a process reported meanwhile: the next read tidies up
        except redis_errors() as exc:
            raise BrokerUnavailable(
                f"Could not read presence from Redis at {self._safe_url()}: {exc}"
            ) from exc
        return [report.decode("utf-8", "replace") for report in reports if report is not None]

    def _presence_report_key(self, process_key: str) -> str:
        return f"{self.presence_key} {process_key}"

    def _decode(self, key: bytes, payload: bytes) -> Message | None:
        """Return the message of a pub/sub ``payload`` on channel ``key``; None (logged) if malformed."""
        parts = payload.split(b"\n", 3)
        if len(parts) != 4 or parts[0] != WIRE_VERSION:
            logger.error(
                "Ignoring a message on Redis channel %r in an unknown format (expected version 1: "
                "'1\\n<id>\\n<event>\\n<data>').",
                key,
            )
            return None
        channel = self._channel_of(key)
        event_id = parts[1].decode() if parts[1] else None
        position = None if event_id is None else parse_position(event_id)
        if event_id is not None and position is None:
            logger.error(
                "Ignoring a message on Redis channel %r with a malformed id %r.", key, event_id
            )
            return None
        text = parts[3].decode("utf-8", "replace")
        return Message(channel, parts[2].decode(), text, position, event_id)


def redis_errors() -> tuple[type[Exception], ...]:
    """Return what redis-py raises when Redis cannot be reached or refuses (a cluster's too)."""
    import redis
    from redis.exceptions import RedisClusterException

    return (redis.RedisError, RedisClusterException)


def _position(value: bytes | str) -> Position:
    text = value.decode() if isinstance(value, bytes) else value
    position = parse_position(text)
    if position is None:
        raise BrokerUnavailable(f"Redis returned {text!r}, which is not a stream id.")
    return position


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


def take_connection(pool: Any, command: str) -> Any:
    """Return a connection of ``pool``, connected (redis-py before 5.3 requires a command name)."""
    if _needs_command_name(pool.__class__):
        return pool.get_connection(command)
    return pool.get_connection()


@functools.cache
def _needs_command_name(pool_class: Any) -> bool:
    """Whether ``pool_class.get_connection`` requires a command name (asked once per class).

    Every publish takes a connection first: ``inspect.signature`` each time
    would cost more than the check it serves.
    """
    parameter = inspect.signature(pool_class.get_connection).parameters.get("command_name")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def wrote_nothing(exc: Exception) -> bool:
    """Whether ``exc``, an error of a sent publish, proves that Redis wrote nothing.

    Only an error reply does: Redis refused the command whole (an ACL, ``OOM``,
    ``READONLY``, ``CLUSTERDOWN``), or publish.lua stopped at or before the
    line that records the event (Redis names the line: ``@user_script:9``); a
    later line failed after the event was recorded. Pitfall: an error that
    names a script but no line counts as written (``BUSY`` among them).
    """
    import redis

    if not isinstance(exc, redis.ResponseError):
        return False  # a timeout or a lost connection: Redis may have run it
    text = str(exc)
    line = re.search(r"@user_script:\s*(\d+)", text)
    if line is None:  # refused whole; unless a script ran that did not say where it stopped
        return "script" not in text.lower()
    return int(line.group(1)) <= _recording_line()


@functools.cache
def _recording_line() -> int:
    """Return the line of publish.lua that records the event (its first write, ``XADD``)."""
    lines = script("publish.lua").splitlines()
    return next(number for number, text in enumerate(lines, 1) if "redis.call('XADD'" in text)


def refused_by_acl(exc: Exception) -> bool:
    """Whether Redis refused for want of an ACL permission (also when a script's command was)."""
    text = str(exc)
    return "NOPERM" in text or "no permissions" in text or "can't run this command" in text


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
