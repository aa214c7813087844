"""Where the Redis master is when Redis Sentinel manages it: asked of the sentinels on every connect.

``SentinelMaster`` turns ``SSE_REDIS_SENTINELS`` and
``SSE_REDIS_SENTINEL_SERVICE`` into the master's address, through redis-py's
``redis.sentinel.Sentinel``. The Redis broker stays one ``RedisBroker``:
its command connection (``MasterConnection``) and its subscriber ask for
the address each time they (re)connect, check with ``ROLE`` that the server
they reached is a master (the sentinels may not have noticed a demotion
yet), and drop a connection that Redis answers with ``READONLY``. Nothing is
retried: the caller gets the error and the next connection asks again.

Discovery asks the sentinels in turn, one connection at a time, until one
names a master that is up; one discovery at a time per process, and its
connections are closed when done: a process keeps no sentinel connection
between (re)connects.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from ...core.concurrency import new_lock


class MasterNotFound(builtins.ConnectionError):
    """No sentinel named a master that is up (an ``OSError``, as a refused connection is)."""


def sentinel_tls(url: str) -> dict[str, Any]:
    """Return the TLS keywords for the sentinels of a master reached at ``url`` (none for ``redis://``).

    The sentinels of a ``rediss://`` master are reached over TLS too, trusting
    the same CA (the URL's ``ssl_*`` query parameters).
    """
    if not url.startswith("rediss://"):
        return {}
    from redis.connection import parse_url

    params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return {"ssl": True, **{name: v for name, v in params.items() if name.startswith("ssl_")}}


class SentinelMaster:
    """The master of ``service``, as the sentinels at ``sentinels`` report it.

    ``timeout`` bounds each sentinel's connect and answer; ``password`` is
    the sentinels' own (``requirepass`` of their config), not the master's;
    ``ssl`` is the TLS keywords of redis-py (``ssl=True``, ``ssl_ca_certs``...)
    used for the sentinels too, empty for plain TCP.
    """

    def __init__(
        self,
        sentinels: Sequence[tuple[str, int]],
        service: str,
        timeout: float,
        password: str | None = None,
        ssl: dict[str, Any] | None = None,
    ) -> None:
        self.sentinels = list(sentinels)
        self.service = service
        self._sentinel = Sentinel(
            self.sentinels,
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "password": password,
                "retry": Retry(NoBackoff(), 0),
                **(ssl or {}),
            },
        )
        self._lock = new_lock()

    def address(self) -> tuple[str, int]:
        """Return the master's ``(host, port)``; raise ``MasterNotFound`` saying why not."""
        with self._lock:
            try:
                return self._discover()
            finally:
                self._release()

    def _discover(self) -> tuple[str, int]:
        """Ask the sentinels in turn; the first that names a master that is up wins."""
        reasons = []
        for (host, port), client in zip(self.sentinels, self._sentinel.sentinels, strict=True):
            where = f"{host}:{port}"
            try:
                masters = cast(dict[str, dict[str, Any]], client.sentinel_masters())
                state = masters.get(self.service)
            except redis.RedisError as exc:
                reasons.append(f"{where}: {exc}")
                continue
            if state is None:
                reasons.append(f"{where} does not monitor it")
            elif not self._sentinel.check_master_state(state, self.service):  # type: ignore[no-untyped-call]
                reasons.append(f"{where} reports it down")
            else:
                return str(state["ip"]), int(state["port"])
        raise MasterNotFound(
            f"no Sentinel of SSE_REDIS_SENTINELS knows a master {self.service!r} that is up "
            f"({'; '.join(reasons)})"
        )

    def role_problem(self, reply: Any, address: tuple[str, int]) -> str | None:
        """Return why the ``ROLE`` ``reply`` of ``address`` is not a master's, or None if it is."""
        role = reply[0] if isinstance(reply, list) and reply else reply
        if role in (b"master", "master"):
            return None
        shown = role.decode() if isinstance(role, bytes) else role
        return (
            f"{address[0]}:{address[1]}, which the sentinels named as the master {self.service!r}, "
            f"is a {shown} now (a failover is under way)"
        )

    def describe(self) -> str:
        """Name the master for log lines and errors."""
        return f"the master {self.service!r} of Sentinel {self.sentinels_text()}"

    def sentinels_text(self) -> str:
        return ", ".join(f"{host}:{port}" for host, port in self.sentinels)

    def _release(self) -> None:
        for client in self._sentinel.sentinels:
            client.connection_pool.disconnect()

    def close(self) -> None:
        """Close every sentinel connection (discovery closes them anyway)."""
        with self._lock:
            self._release()


class MasterConnection(redis.Connection):
    """A redis-py connection to the master ``master`` names, asked anew on every connect.

    Pitfall: redis-py hands it the URL's host and port; they are replaced
    before each connect and mean nothing.
    """

    def __init__(self, *, master: SentinelMaster, **kwargs: Any) -> None:
        self.master = master
        kwargs["redis_connect_func"] = _handshake
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def _connect(self) -> Any:
        # The one place every connect goes through (connect(), and a send on a closed connection).
        try:
            self.host, self.port = self.master.address()
        except MasterNotFound as exc:
            raise redis.ConnectionError(str(exc)) from None  # not an OSError: not re-wrapped
        return super()._connect()  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ReadOnlyError:
            # A demoted master: the next command connects to the new one.
            self.disconnect()  # type: ignore[no-untyped-call]
            raise


class SSLMasterConnection(MasterConnection, redis.SSLConnection):
    """``MasterConnection`` over TLS (a ``rediss://`` SSE_REDIS_URL)."""


def _handshake(connection: redis.Connection) -> None:
    """Authenticate and select the database as usual, then refuse a server that is not a master."""
    connection.on_connect()  # type: ignore[no-untyped-call]
    connection.send_command("ROLE")  # type: ignore[no-untyped-call]
    reply = connection.read_response()
    master = cast(MasterConnection, connection).master
    problem = master.role_problem(reply, (connection.host, connection.port))
    if problem is not None:
        raise redis.ConnectionError(problem)
