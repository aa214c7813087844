"""Retention: deleting what ``SSE_HISTORY_MAXLEN`` and ``SSE_HISTORY_TTL`` no longer keep.

Publishing never deletes (a delete in the publisher's transaction would
lock rows other publishers delete too): each process runs a cleaner every
``SSE_POSTGRES_CLEANUP_INTERVAL`` seconds, and the one that takes the
advisory lock deletes, in short batches (a transaction each), rows past the count or the age,
and rows without history. It never deletes a row that a live listener has
not read yet (see ``schema.CLEAN``), so trimming cannot hide an event from
a live stream; a trimmed position is a gap (``stream-reset``) for a client
that resumes from it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ...core.concurrency import Task, sleep
from ...exceptions import BrokerUnavailable
from . import schema
from .connection import SharedConnection

logger = logging.getLogger(__name__)

#: Rows deleted per statement (each statement is a short transaction of its own).
BATCH = 5000
#: The share of the NOTIFY queue in use from which the cleaner warns.
QUEUE_WARNING = 0.5


class Cleaner:
    """Deletes expired rows every ``interval`` seconds (0: only when ``clean()`` is called)."""

    def __init__(
        self, connection: SharedConnection, maxlen: int, ttl: float, interval: float, alive: float
    ) -> None:
        self.connection = connection
        self.maxlen = maxlen
        self.ttl = ttl
        self.interval = interval
        self.alive = alive
        self._task: Task | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._failing = False
        self._queue_warned = False

    def start(self) -> None:
        """Begin cleaning every ``interval`` seconds, once (later calls do nothing)."""
        if self._task is not None or not self.interval or self._closed:
            return
        with self._start_lock:
            if self._task is None:
                self._task = Task(self._run, name="django-sse-postgres-cleaner")

    def clean(self) -> int:
        """Delete what retention no longer keeps, unless another process is at it; return the rows deleted.

        Raises ``BrokerUnavailable`` when the database cannot be reached.
        """
        return self.connection.run("apply retention", self._clean)

    def _clean(self, connection: Any) -> int:
        # Each batch is a transaction holding the lock (an advisory lock of the transaction,
        # so that it works through a pooler in transaction mode).
        params = {"maxlen": self.maxlen, "ttl": self.ttl, "alive": self.alive, "batch": BATCH}
        deleted = 0
        while True:
            with connection.transaction():
                locked = connection.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (schema.CLEANER_LOCK,)
                ).fetchone()[0]
                if not locked:
                    return deleted
                count = connection.execute(schema.CLEAN, params).fetchone()[0]
                deleted += count
                if count < BATCH:
                    connection.execute(schema.FORGET_TRIMS)
                    connection.execute(schema.EXPIRE_PRESENCE)
                    connection.execute(schema.FORGET_LISTENERS)
                    usage = connection.execute(schema.QUEUE_USAGE).fetchone()[0]
                    self._watch_queue(usage)
                    return deleted

    def _watch_queue(self, usage: float) -> None:
        """Warn once while the NOTIFY queue is over half full (at full, commits that NOTIFY fail)."""
        full = usage >= QUEUE_WARNING
        if full and not self._queue_warned:
            logger.warning(
                "PostgreSQL's NOTIFY queue is %.0f%% full: a session that listens is stuck in a "
                "transaction (see pg_stat_activity); once it is full, every transaction that "
                "publishes an event fails at its commit.",
                usage * 100,
            )
        self._queue_warned = full

    def _run(self) -> None:
        while not self._closed:
            sleep(self.interval)
            if self._stopped():
                break
            try:
                deleted = self.clean()
            except BrokerUnavailable as exc:
                if not self._failing:
                    logger.warning("Could not apply history retention (retrying): %s", exc)
                self._failing = True
                continue
            if self._failing:
                logger.info("History retention applies again.")
            self._failing = False
            if deleted:
                logger.debug("Retention deleted %d event(s).", deleted)

    def _stopped(self) -> bool:
        """Whether ``close()`` was called (read anew: another task sets it)."""
        return self._closed

    def close(self) -> None:
        self._closed = True
        self.connection.close()
