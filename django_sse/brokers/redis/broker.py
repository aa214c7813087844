"""The Redis broker: history in Redis Streams, live events over pub/sub.

Publishing runs ``publish.lua``, which appends the event to the channel's
stream (``XADD`` with an approximate ``MAXLEN`` and a ``MINID`` age trim) and
``PUBLISH``\\es it in one atomic step, so no subscriber sees an event that
history lacks or the other way round. Each process keeps one pub/sub
connection (``subscriber.SubscriberConnection``) for every channel its streams read,
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
from typing import TYPE_CHECKING, Any, cast

from django.core.checks import CheckMessage

from ...conf import Settings
from ...core.concurrency import Task, sleep
from ...exceptions import PublishOutcomeUnknown
from ..base import BrokerListener
from .checks import check_connection, check_sentinel
from .common import (
    ACL_HINT,
    CATCH_UP,
    CATCH_UP_BYTES,
    SUBSCRIBER_IDLE_PING,
    FirstContact,
    RedisBrokerBase,
    redis_options,
    refused_by_acl,
    script,
)
from .subscriber import SubscriberConnection

if TYPE_CHECKING:
    from .sentinel import SentinelMaster

__all__ = ["ACL_HINT", "RedisBroker"]

logger = logging.getLogger(__name__)

#: Seconds the reply of a publish that waits for replicas may take past its WAIT.
_WAIT_GRACE = 1.0

#: The master's URL with Sentinel when SSE_REDIS_URL is not set: database 0, no password, no TLS.
SENTINEL_DEFAULT_URL = "redis://sentinel-managed/0"


class RedisBroker(RedisBrokerBase):
    """Publishes through Redis and feeds the hub from one pub/sub connection.

    ``master``: where a Sentinel-managed master is (``SSE_REDIS_SENTINELS``);
    then ``url`` gives only the master's credentials, database and TLS, and
    both connections ask ``master`` for its address on every connect.
    ``replicas`` (``SSE_PUBLISH_REPLICAS``): how many replicas must hold an
    event before ``publish`` returns its id (0: none, don't wait).
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisBroker:
        """Return a broker for the Redis at ``SSE_REDIS_URL``, or the master the sentinels name.

        With ``SSE_REDIS_SENTINELS``, the URL (``SENTINEL_DEFAULT_URL`` when
        unset) gives only the master's password, database and TLS.
        """
        url = settings.redis_url or SENTINEL_DEFAULT_URL
        return cls(
            url,
            **redis_options(settings),
            master=_sentinel_master(settings, url),
            replicas=settings.SSE_PUBLISH_REPLICAS,
        )

    @classmethod
    def check(cls, settings: Settings) -> list[CheckMessage]:
        """Check the connection settings (E021-E024) and the Sentinel ones (E042, E043)."""
        return check_connection(settings) + check_sentinel(settings)

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

        super().__init__(url, prefix, timeout, maxlen, ttl)
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
        # The subscriber's own pool of one, with the same credentials, TLS and master;
        # RESP2, whose pub/sub replies are the arrays _handle reads (redis-py 8 speaks RESP3).
        self._subscriber_pool = redis.ConnectionPool.from_url(
            url,
            max_connections=1,
            protocol=2,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._publish = self._client.register_script(script("publish.lua"))
        self._read = self._client.register_script(script("read.lua"))
        # Whitespace is never in a user's channel name, so this cannot collide with one.
        self.control_key = prefix + "django-sse control"
        self._control_key_bytes = self.control_key.encode()
        #: The sorted set of the processes that report presence (score: time of their last report).
        self.presence_key = prefix + "django-sse presence"
        self._subscriber: SubscriberConnection | None = None
        self._listener: BrokerListener | None = None
        self._closed = False
        self._reader: Task | None = None
        #: A channel's subscription was confirmed on the current connection.
        self._confirmed = False
        self._contact = FirstContact()

    def is_connected(self) -> bool:
        return self._subscriber is not None

    def never_reached(self) -> bool:
        return self._contact.never_reached(self.timeout)

    def _run_publish(self, key: str, args: list[str | int]) -> list[bytes]:
        if not self.replicas:
            return super()._run_publish(key, args)
        return self._publish_replicated(key, args)

    def _publish_replicated(self, key: str, args: list[str | int]) -> list[bytes]:
        """Run the publish script and ``WAIT`` for ``replicas`` in one round trip; return the ids.

        Raises ``PublishOutcomeUnknown`` when fewer replicas confirm within the
        timeout, or ``WAIT`` fails (the event is on the master, and streams
        may have received it); the publish's own error as it is.
        """
        import redis

        for attempt in range(2):
            with self._client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._publish.sha, 1, key, *args)
                pipe.execute_command("WAIT", self.replicas, self._wait_ms)
                # Each reply apart: an error of WAIT must not hide that the event was published.
                reply, confirmed = pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError) and not attempt:
                # A new or restarted master: load the script, then publish (it never ran).
                self._client.script_load(self._publish.script)
                continue
            break
        if isinstance(reply, Exception):
            raise reply
        event_id = reply[0]
        if isinstance(confirmed, Exception):
            raise PublishOutcomeUnknown(
                f"Event {event_id.decode()} was published on Redis at {self._safe_url()} but "
                f"WAIT for SSE_PUBLISH_REPLICAS={self.replicas} replicas failed: {confirmed}"
                + (f" {ACL_HINT}" if refused_by_acl(confirmed) else "")
            ) from confirmed
        if confirmed < self.replicas:
            raise PublishOutcomeUnknown(
                f"Event {event_id.decode()} was published on Redis at {self._safe_url()} but "
                f"only {confirmed} of SSE_PUBLISH_REPLICAS={self.replicas} replicas confirmed it "
                f"within SSE_PUBLISH_TIMEOUT ({self.timeout}s): a failover could lose it."
            )
        return cast(list[bytes], reply)

    # The subscriber --------------------------------------------------------

    def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._reader = Task(self._listen, listener, name="django-sse-redis")

    def subscribe(self, channels: list[str]) -> bool:
        return self._send("SUBSCRIBE", channels)

    def unsubscribe(self, channels: list[str]) -> bool:
        return self._send("UNSUBSCRIBE", channels)

    def catch_up_live(self, channel: str, token: str) -> bool:
        # Redis answers a PING on the subscriber connection after every message
        # published before it: the pong, carrying the token, follows them.
        return self._send_raw("PING", CATCH_UP + token)

    def _send(self, command: str, channels: list[str]) -> bool:
        return self._send_raw(command, *(self.prefix + channel for channel in channels))

    def _send_raw(self, *args: str) -> bool:
        import redis

        subscriber = self._subscriber
        if subscriber is None:
            return False
        try:
            return subscriber.send(*args)
        except (OSError, redis.RedisError, ValueError):
            return False  # the listener notices, reconnects and resubscribes everything

    def _listen(self, listener: BrokerListener) -> None:
        import redis

        delay = 0.05
        outage_started = None
        # A subscription refused by the ACL: connecting is no proof it is back, a
        # channel's confirmation is (else every retry would log, without backoff).
        acl_refused = False
        while not self._closed:
            subscriber = SubscriberConnection(self._subscriber_pool, SUBSCRIBER_IDLE_PING)
            try:
                subscriber.connect()
                first = self._contact.succeeded()
                if first and outage_started is not None:
                    logger.info(
                        "Reached Redis at %s after %.1fs of failed attempts.",
                        self._safe_url(),
                        time.monotonic() - outage_started,
                    )
                    outage_started = None  # there was no subscription to restore
                self._subscriber = subscriber
                subscriber.send("SUBSCRIBE", self.control_key)
                self._confirmed = False
                resubscribed = listener.on_connected()
                if not acl_refused:
                    self._log_restored(outage_started, resubscribed)
                    outage_started, delay = None, 0.05
                for reply in subscriber.replies():
                    self._handle(listener, reply)
                    if acl_refused and self._confirmed:
                        acl_refused = False
                        self._log_restored(outage_started, resubscribed)
                        outage_started, delay = None, 0.05
            # ValueError: a send from another task failed and closed the connection under
            # this read (redis-py's buffer: "I/O operation on closed file").
            except (OSError, redis.RedisError, ValueError) as exc:
                if self._stopped():
                    break
                acl_refused = acl_refused or refused_by_acl(exc)
                if outage_started is None:
                    outage_started = time.monotonic()
                    if refused_by_acl(exc):
                        logger.error(
                            "Redis at %s refused the subscription (NOPERM): %s %s Retrying with backoff.",
                            self._safe_url(),
                            exc,
                            ACL_HINT,
                        )
                    elif not self._contact.reached:
                        logger.warning(
                            "Could not reach Redis at %s (never connected: %s); streams are "
                            "refused with a 503 until it answers. Retrying with backoff.",
                            self._safe_url(),
                            exc,
                        )
                    else:
                        logger.warning(
                            "Lost the Redis subscription at %s (%s); reconnecting with backoff.",
                            self._safe_url(),
                            exc,
                        )
            finally:
                if not self._contact.reached:
                    self._contact.failed()
                self._subscriber = None
                subscriber.close()
                if not self._closed:
                    listener.on_disconnected()
            if not self._closed:
                sleep(delay)
                delay = min(delay * 2, 2.0)

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
        elif kind == b"pong" and reply[1].startswith(CATCH_UP_BYTES):
            listener.on_caught_up(reply[1][len(CATCH_UP_BYTES) :].decode())

    def _stopped(self) -> bool:
        """Whether ``close()`` was called (read anew: another task sets it)."""
        return self._closed

    def close(self) -> None:
        self._closed = True
        subscriber = self._subscriber
        if subscriber is not None:
            subscriber.close()
        self._pool.disconnect()
        self._subscriber_pool.disconnect()
        if self.master is not None:
            self.master.close()

    def _safe_url(self) -> str:
        if self.master is not None:
            return self.master.describe()
        params = self._subscriber_pool.connection_kwargs
        if params.get("path"):
            return f"unix:{params['path']}"
        return f"{params.get('host', 'localhost')}:{params.get('port', 6379)}"


def _sentinel_master(settings: Settings, url: str) -> SentinelMaster | None:
    """Return how to find the master when ``SSE_REDIS_SENTINELS`` is set, else None."""
    sentinels = settings.SSE_REDIS_SENTINELS
    if not sentinels:
        return None
    service = settings.SSE_REDIS_SENTINEL_SERVICE
    if service is None:  # check() reports it (E043); a caller that skipped it learns here
        raise ValueError("SSE_REDIS_SENTINELS needs SSE_REDIS_SENTINEL_SERVICE, the master's name.")
    from .sentinel import SentinelMaster, sentinel_tls  # redis-py, needed only with Sentinel
    from .url import parse_sentinel

    return SentinelMaster(
        [parse_sentinel(entry) for entry in sentinels],
        service,
        timeout=settings.SSE_PUBLISH_TIMEOUT,
        password=settings.SSE_REDIS_SENTINEL_PASSWORD,
        ssl=sentinel_tls(url),
    )
