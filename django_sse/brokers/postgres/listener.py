"""The process's one LISTEN connection: it reads the new rows and hands them to the hub.

A notification only says "read": the listener reads every row after its
cursor that is below the horizon (see ``schema``), in ``(xid, id)`` order,
and calls ``on_message`` for those of subscribed channels. It also reads
every ``poll_interval`` seconds whatever it heard, so a lost notification
delays an event by at most that; and, when committed rows wait behind an
open transaction, again soon (backing off up to the interval), since the
end of that transaction is announced by nobody.

Subscribing is local (every row is read; the set decides what is handed
on); its confirmation, like ``catch_up_live``'s answer, comes from the
listener's task after a read that began after the call, so it follows every
event committed before the call, and a channel's rows are handed on from
the next read on (as Redis sends nothing published before a SUBSCRIBE). The cursor, written to the listeners'
table every ``poll_interval``, bounds what the cleaner may delete; a
listener that could not write it for ``alive / 2`` seconds counts as
disconnected (its streams catch up from history), since the cleaner may
then have deleted rows it had not read.

Blocking calls only (``select`` and psycopg's waits), so gevent and threads both work.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import deque
from typing import Any

from ...core.concurrency import Task, sleep
from ...core.positions import Position, parse_position
from ..base import BrokerListener, Message
from ..redis.common import FirstContact
from . import schema
from .connection import connect, describe

logger = logging.getLogger(__name__)

#: Rows read per statement.
BATCH = 1000


class _Stale(Exception):
    """The listener could not say where it was for too long: what it has not read may be gone."""


class Listener:
    """Reads events for one hub from its own connection (``params``: psycopg keywords)."""

    def __init__(self, params: dict[str, Any], process_key: str, poll_interval: float) -> None:
        self.params = {**params, "application_name": "django-sse listener"}
        self.process_key = process_key
        self.poll_interval = poll_interval
        #: Seconds after which the cleaner no longer waits for a silent listener.
        self.alive = alive_window(poll_interval)
        self.contact = FirstContact()
        self.cursor: Position = (0, 0)
        self._subscribed: set[str] = set()
        self._commands: deque[tuple[str, str]] = deque()
        self._connected = False
        self._closed = False
        self._connection: Any = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._task: Task | None = None
        self._seen_at = time.monotonic()

    # Called by the broker --------------------------------------------------

    def start(self, listener: BrokerListener) -> None:
        self._task = Task(self._run, listener, name="django-sse-postgres")

    def subscribe(self, channels: list[str]) -> bool:
        if not self._connected:
            return False
        self._command(*(("subscribed", channel) for channel in channels))
        return True

    def unsubscribe(self, channels: list[str]) -> bool:
        self._subscribed.difference_update(channels)
        return self._connected

    def catch_up(self, token: str) -> bool:
        if not self._connected:
            return False
        self._command(("caught up", token))
        return True

    def is_connected(self) -> bool:
        return self._connected

    def _stopped(self) -> bool:
        """Whether ``close()`` was called (read anew: another task sets it)."""
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._wake()
        if self._task is not None:
            self._task.join(5)
        self._wake_r.close()
        self._wake_w.close()

    # Inside ----------------------------------------------------------------

    def _command(self, *commands: tuple[str, str]) -> None:
        self._commands.extend(commands)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _run(self, listener: BrokerListener) -> None:
        import psycopg

        delay = 0.05
        outage_started: float | None = None
        while not self._closed:
            connection = None
            try:
                connection = connect(self.params)
                connection.execute(f"LISTEN {schema.WAKE_CHANNEL}")
                connection.execute(f"LISTEN {schema.CONTROL_CHANNEL}")
                horizon = connection.execute(schema.HORIZON).fetchone()[0]
                self.cursor = (int(horizon), 0)  # every row before it is in history
                self._say_seen(connection)
                first = self.contact.succeeded()
                self._connection = connection
                self._commands.clear()
                self._connected = True
                resubscribed = listener.on_connected()
                if outage_started is not None:
                    what = "Reached" if first else "Listening again on"
                    logger.info(
                        "%s %s after %.1fs; resubscribed %d channel(s).",
                        what,
                        describe(self.params),
                        time.monotonic() - outage_started,
                        resubscribed,
                    )
                outage_started, delay = None, 0.05
                self._serve(connection, listener)
            except (psycopg.Error, OSError, _Stale) as exc:
                if self._stopped():
                    break
                if outage_started is None:
                    outage_started = time.monotonic()
                    if not self.contact.reached:
                        logger.warning(
                            "Could not reach %s (never connected: %s); streams are refused "
                            "with a 503 until it answers. Retrying with backoff.",
                            describe(self.params),
                            exc,
                        )
                    else:
                        logger.warning(
                            "Lost the LISTEN connection to %s (%s); reconnecting with backoff.",
                            describe(self.params),
                            exc,
                        )
            finally:
                if not self.contact.reached:
                    self.contact.failed()
                self._connected = False
                self._connection = None
                if connection is not None:
                    connection.close()
                if not self._closed:
                    listener.on_disconnected()
            if not self._closed:
                sleep(delay)
                delay = min(delay * 2, 2.0)

    def _serve(self, connection: Any, listener: BrokerListener) -> None:
        """Read, hand over and confirm until the connection fails or ``close()``."""
        now = time.monotonic()
        next_poll = now  # read at once: rows committed before LISTEN
        retry_at: float | None = None
        retry_delay = 0.01
        next_seen = now + self.poll_interval
        while not self._closed:
            notified = False
            for notify in connection.notifies(timeout=0):
                if notify.channel == schema.CONTROL_CHANNEL:
                    listener.on_control(notify.payload)
                else:
                    notified = True
            commands = []
            while self._commands:
                commands.append(self._commands.popleft())
            now = time.monotonic()
            if now >= next_seen:
                self._say_seen(connection)
                next_seen = now + self.poll_interval
            due = now >= next_poll or (retry_at is not None and now >= retry_at)
            if notified or commands or due:
                held = self._read(connection, listener)
                for kind, value in commands:
                    if kind == "subscribed":  # from the next read on: rows read now came before
                        self._subscribed.add(value)
                        listener.on_subscribed(value)
                    else:
                        listener.on_caught_up(value)
                next_poll = now + self.poll_interval
                if held:
                    retry_at = now + retry_delay
                    retry_delay = min(retry_delay * 2, self.poll_interval)
                else:
                    retry_at, retry_delay = None, 0.01
                continue
            until = min(next_poll, next_seen, retry_at if retry_at is not None else next_poll)
            readable, _, _ = select.select(
                [connection.fileno(), self._wake_r], [], [], max(0.0, until - now)
            )
            if self._wake_r in readable:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except OSError:
                    pass  # drained

    def _read(self, connection: Any, listener: BrokerListener) -> bool:
        """Hand over every row after the cursor below the horizon; return whether some wait behind it."""
        if time.monotonic() - self._seen_at > self.alive / 2:
            raise _Stale(f"the listener could not record its position for {self.alive / 2:.0f}s")
        subscribed = self._subscribed
        while True:
            xid, row_id = self.cursor
            rows = connection.execute(schema.LIVE, (str(xid), row_id, BATCH)).fetchall()
            for xid_text, row_id, channel, event, data, history, ready in rows:
                if not ready:
                    return True
                position = (int(xid_text), row_id)
                self.cursor = position
                if channel in subscribed:
                    listener.on_message(
                        Message(channel, event, data, position if history else None)
                    )
            if len(rows) < BATCH:
                return False

    def _say_seen(self, connection: Any) -> None:
        xid, row_id = self.cursor
        connection.execute(schema.LISTENER_SEEN, (self.process_key, str(xid), row_id))
        self._seen_at = time.monotonic()

    def forget(self, shared: Any) -> None:
        """Remove this listener's row (at ``close()``), through ``shared`` (a ``SharedConnection``)."""
        shared.run(
            "forget the listener",
            lambda connection: connection.execute(schema.LISTENER_GONE, (self.process_key,)),
        )


def alive_window(poll_interval: float) -> float:
    """Return how long the cleaner waits for a listener that stopped saying where it is."""
    return max(30.0, 10 * poll_interval)


def parse_row_position(text: str) -> Position:
    """Return the position ``<xid>-<id>`` (as the SQL writes it)."""
    position = parse_position(text)
    if position is None:
        raise ValueError(f"PostgreSQL returned {text!r}, which is not a position.")
    return position
