"""The PostgreSQL broker: events in a table of the site's database, woken by LISTEN/NOTIFY.

``publish`` inserts the event with Django's connection of the calling thread
(``SSE_POSTGRES_DATABASE``), so inside ``transaction.atomic()`` on that
database it is part of the transaction: rolled back, it never existed;
committed, it is delivered once. Outside one, it commits at once. The same
statement NOTIFYs the listeners with an empty payload (one per transaction).

Each process has three connections of its own besides Django's: the
listener's (``listener.Listener``, LISTEN in autocommit, with
``SSE_POSTGRES_LISTEN_OPTIONS`` over the database's, so that it can bypass a
pooler), one for history reads, presence and control messages, and the
cleaner's (``retention``). Positions and why no reader can skip a committed
event: ``schema``'s docstring.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from django.core.checks import CheckMessage

from ...conf import Settings
from ...core.concurrency import sleep
from ...core.positions import ZERO, Position
from ...exceptions import BrokerUnavailable, PublishOutcomeUnknown, PublishRefused
from ..base import Broker, BrokerListener, GapCause, History, Message
from . import schema
from .checks import check_postgres
from .connection import SharedConnection, connection_params, describe
from .listener import Listener, parse_row_position
from .retention import Cleaner

#: The largest value of a PostgreSQL bigint: positions past it were never issued.
_BIGINT_MAX = 2**63 - 1
#: Seconds a tip read waits for committed rows that an open transaction holds back.
TIP_WAIT = 0.5
#: NOTIFY refuses payloads of 8000 bytes or more.
_NOTIFY_MAX = 7999


class PostgresBroker(Broker):
    """Publishes into the database of Django alias ``database`` and feeds the hub from its listener."""

    shared = True
    blocking_reads = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresBroker:
        """Return a broker on ``SSE_POSTGRES_DATABASE`` keeping ``SSE_HISTORY_MAXLEN`` events per channel for ``SSE_HISTORY_TTL`` s."""
        return cls(
            settings.SSE_POSTGRES_DATABASE,
            maxlen=settings.SSE_HISTORY_MAXLEN,
            ttl=settings.SSE_HISTORY_TTL,
            timeout=settings.SSE_PUBLISH_TIMEOUT,
            poll_interval=settings.SSE_POSTGRES_POLL_INTERVAL,
            cleanup_interval=settings.SSE_POSTGRES_CLEANUP_INTERVAL,
            listen_options=settings.SSE_POSTGRES_LISTEN_OPTIONS,
        )

    @classmethod
    def check(cls, settings: Settings) -> list[CheckMessage]:
        """Check the PostgreSQL settings (E060-E063)."""
        return check_postgres(settings)

    def __init__(
        self,
        database: str = "default",
        maxlen: int = 10_000,
        ttl: float = 86400,
        timeout: float = 5.0,
        poll_interval: float = 1.0,
        cleanup_interval: float = 10.0,
        listen_options: dict[str, Any] | None = None,
    ) -> None:
        from django.db import connections

        self.database = database
        self.maxlen = maxlen
        self.ttl = ttl
        self.timeout = timeout
        self.params = connection_params(connections.settings[database], timeout)
        self.listen_params = {**self.params, **(listen_options or {})}
        self.process_key = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._shared = SharedConnection(self.params)
        self._listener = Listener(self.listen_params, self.process_key, poll_interval)
        self.cleaner = Cleaner(
            SharedConnection(self.params), maxlen, ttl, cleanup_interval, self._listener.alive
        )
        self._started = False

    # Publishing ------------------------------------------------------------

    def publish(self, channel: str, event: str, data: str, history: bool) -> str | None:
        from django.db import DatabaseError, InterfaceError, OperationalError, connections

        connection = connections[self.database]
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            raise PublishRefused(
                f"Could not publish to {describe(self.params)}, nothing was published: {exc}"
            ) from exc
        try:
            with connection.cursor() as cursor:
                cursor.execute(schema.PUBLISH, [channel, event, data, history])
                xid, row_id, _ = cursor.fetchone()
        except DatabaseError as exc:
            # In a transaction, a failed statement leaves nothing to commit; in autocommit
            # a lost connection may have lost only the answer.
            unknown = isinstance(exc, (OperationalError, InterfaceError))
            if unknown and not connection.in_atomic_block:
                connection.close()  # a broken connection: the next publish opens another
            if connection.in_atomic_block or not unknown:
                raise PublishRefused(
                    f"Could not publish to {describe(self.params)}, nothing was published: {exc}"
                ) from exc
            raise PublishOutcomeUnknown(
                f"Could not publish to {describe(self.params)}, the event may have been "
                f"published: {exc}"
            ) from exc
        self.cleaner.start()
        return f"{xid}-{row_id}" if history else None

    def publish_control(self, payload: str) -> None:
        if len(payload.encode()) > _NOTIFY_MAX:
            raise PublishRefused(
                f"A control message of {len(payload.encode())} bytes is over NOTIFY's limit."
            )
        try:
            self._shared.run(
                "publish a control message",
                lambda c: c.execute("SELECT pg_notify(%s, %s)", (schema.CONTROL_CHANNEL, payload)),
            )
        except BrokerUnavailable as exc:
            raise PublishRefused(str(exc)) from exc

    # History ---------------------------------------------------------------

    def read_history(
        self, channel: str, after: Position | None, limit: int, max_bytes: int | None = None
    ) -> History:
        beyond = after is not None and max(after) > _BIGINT_MAX
        xid, row_id = (0, 0) if after is None or beyond else after
        params = {
            "channel": channel,
            "xid": str(xid),
            "id": row_id,
            "limit": 0 if after is None else limit,
            "max_bytes": max_bytes or 0,
        }
        rows = self._read_history(params, tip_only=after is None)
        tip_text, known, trimmed_text = rows[0][:3]
        tip = parse_row_position(tip_text) if tip_text else None
        if after is None:
            return History(tip=tip or ZERO)
        if tip is None:  # nothing retained: never published, or all of it expired
            if after == ZERO:
                return History()
            return History(gap=True, cause=GapCause.HISTORY_LOST)
        trimmed = parse_row_position(trimmed_text) if trimmed_text else None
        cause = _lost_after(after, tip, trimmed, bool(known) and not beyond)
        if cause is not None:
            return History(gap=True, tip=tip, cause=cause)
        page = [row[4:] for row in rows if row[4] is not None]
        if max_bytes and len(page) > 1 and page[-1][5] + page[-1][4] > max_bytes:
            page.pop()  # the event that takes the read past the bound (the first always stays)
        messages = [
            Message(channel, event, data, (int(xid_text), number))
            for xid_text, number, event, data, _, _, _ in page
        ]
        cut = bool(page) and page[0][6] > len(page)
        return History(messages=messages, tip=tip, more=cut or len(messages) >= limit)

    def _read_history(self, params: dict[str, Any], tip_only: bool) -> list[Any]:
        """Run ``schema.HISTORY``; for a tip, first wait (``TIP_WAIT`` s at most) for committed rows held back.

        A new stream starts at the tip: waiting a moment for the short
        transactions that hold the horizon back (anyone's, on the whole
        cluster) starts it after the events committed before it opened,
        rather than sending them as live ones.
        """
        deadline = time.monotonic() + TIP_WAIT
        delay = 0.002
        while True:
            rows: list[Any] = self._shared.run(
                "read history", lambda c: c.execute(schema.HISTORY, params).fetchall()
            )
            if not (tip_only and rows[0][3]) or time.monotonic() > deadline:
                return rows
            sleep(delay)
            delay = min(delay * 2, 0.05)

    def read_latest(self, channel: str) -> Message | None:
        row = self._shared.run(
            "read history", lambda c: c.execute(schema.LATEST, (channel,)).fetchone()
        )
        if row is None:
            return None
        xid_text, row_id, event, data = row
        return Message(channel, event, data, (int(xid_text), row_id))

    # Presence --------------------------------------------------------------

    def write_presence(self, process_key: str, report: str, ttl: float) -> None:
        self._shared.run(
            "write presence",
            lambda c: c.execute(schema.WRITE_PRESENCE, (process_key, report, ttl)),
        )

    def read_presence(self) -> list[str]:
        rows = self._shared.run(
            "read presence", lambda c: c.execute(schema.READ_PRESENCE).fetchall()
        )
        return [report for (report,) in rows]

    # The listener ----------------------------------------------------------

    def start(self, listener: BrokerListener) -> None:
        self._started = True
        self._listener.start(listener)
        self.cleaner.start()

    def subscribe(self, channels: list[str]) -> bool:
        return self._listener.subscribe(channels)

    def unsubscribe(self, channels: list[str]) -> bool:
        return self._listener.unsubscribe(channels)

    def catch_up_live(self, channel: str, token: str) -> bool:
        return self._listener.catch_up(token)

    def is_connected(self) -> bool:
        return self._listener.is_connected()

    def never_reached(self) -> bool:
        return self._listener.contact.never_reached(self.timeout)

    def ping(self) -> None:
        self._shared.run("ping", lambda c: c.execute("SELECT 1"))

    def clean(self) -> int:
        """Apply retention now (what the cleaner does every ``cleanup_interval``); return the rows deleted."""
        return self.cleaner.clean()

    def close(self) -> None:
        self.cleaner.close()
        if self._started:
            self._listener.close()
            try:
                self._listener.forget(self._shared)
            except Exception as exc:  # noqa: BLE001 (the row expires by itself)
                import logging

                logging.getLogger(__name__).debug("Could not remove the listener's row: %s", exc)
        self._shared.close()


def _lost_after(
    after: Position, tip: Position, trimmed: Position | None, known: bool
) -> GapCause | None:
    """Return why events after ``after`` are gone, or ``after`` was never issued here; None if neither."""
    if after == tip:
        return None
    if after > tip:  # from the future: another database, or one restored from a backup
        return GapCause.UNKNOWN_POSITION
    if trimmed is not None:
        if after < trimmed:
            return GapCause.TRIMMED
        if after == trimmed:
            return None
    if after == ZERO or known:
        return None
    return GapCause.UNKNOWN_POSITION
