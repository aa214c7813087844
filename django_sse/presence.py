"""Presence: how many streams read a channel, and whose, across every process and host.

Each process that has a hub runs one ``PresenceReporter``: every
``SSE_PRESENCE_INTERVAL`` seconds it writes one report of its streams to the
broker (``Broker.write_presence``), kept for three intervals, so the
streams of a process that dies without a word vanish on their own.
``channel_presence()`` reads every live report (``Broker.read_presence``)
and adds them up. The cost to the broker is one write per process per
interval, however many streams the process serves.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .core.channels import validate_channel
from .core.concurrency import Task, new_wakeup
from .exceptions import BrokerUnavailable

if TYPE_CHECKING:
    from .brokers.base import Broker
    from .core.hub import Hub

logger = logging.getLogger(__name__)

#: A report is kept for this many intervals: a process that stops reporting vanishes then.
EXPIRY_INTERVALS = 3
REPORT_VERSION = 1


@dataclass(frozen=True)
class Presence:
    """The streams that read one channel: how many, and the keys of their logged-in owners."""

    streams: int = 0
    users: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ProcessReport:
    """What one process says of its streams (written as JSON, see ``encode()``)."""

    host: str
    pid: int
    started: float  # unix time the process began serving streams (its hub started)
    reported: float  # unix time of this report
    streams: int  # streams open in the process (also those that read no channel)
    broker_connected: bool
    channels: dict[str, Presence] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The process's name among the reports: ``host:pid``."""
        return f"{self.host}:{self.pid}"

    def encode(self) -> str:
        return json.dumps(
            {
                "v": REPORT_VERSION,
                "host": self.host,
                "pid": self.pid,
                "started": self.started,
                "reported": self.reported,
                "streams": self.streams,
                "broker_connected": self.broker_connected,
                "channels": {
                    name: {"streams": presence.streams, "users": sorted(presence.users)}
                    for name, presence in self.channels.items()
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> ProcessReport | None:
        """Return the report ``text`` holds, or None when it is not a version 1 report."""
        try:
            data = json.loads(text)
            if data["v"] != REPORT_VERSION:
                return None
            return cls(
                host=str(data["host"]),
                pid=int(data["pid"]),
                started=float(data["started"]),
                reported=float(data["reported"]),
                streams=int(data["streams"]),
                broker_connected=bool(data["broker_connected"]),
                channels={
                    str(name): Presence(int(entry["streams"]), frozenset(map(str, entry["users"])))
                    for name, entry in data["channels"].items()
                },
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def presence_of(reports: Iterable[ProcessReport], channel: str) -> Presence:
    """Return the presence on ``channel`` that ``reports`` add up to."""
    streams = 0
    users: set[str] = set()
    for report in reports:
        presence = report.channels.get(channel)
        if presence is not None:
            streams += presence.streams
            users.update(presence.users)
    return Presence(streams, frozenset(users))


def busiest_channels(
    reports: Iterable[ProcessReport], limit: int = 10
) -> list[tuple[str, Presence]]:
    """Return the ``limit`` channels read by the most streams, most first (ties by name)."""
    reports = list(reports)
    names = {name for report in reports for name in report.channels}
    totals = [(name, presence_of(reports, name)) for name in names]
    totals.sort(key=lambda item: (-item[1].streams, item[0]))
    return totals[:limit]


def decode_reports(texts: Iterable[str]) -> list[ProcessReport]:
    """Return the reports of ``texts``, skipping (and logging) any that cannot be read."""
    reports = []
    for text in texts:
        report = ProcessReport.decode(text)
        if report is None:
            logger.error("Ignoring a malformed django-sse presence report: %.200r", text)
        else:
            reports.append(report)
    return sorted(reports, key=lambda report: (report.host, report.pid))


class PresenceReporter:
    """Writes this process's report to the broker every ``interval`` seconds, from its own task.

    Started with the process's hub (``runtime.get_hub()``), stopped by
    ``runtime.reset()``; a copy inherited through ``fork()`` stops at its
    next wake-up (the child starts its own with its own hub). A broker that
    cannot be reached is logged once (WARNING), and once more when it is
    back (INFO); streams are not affected, and the next interval tries again.
    """

    def __init__(self, hub: Hub, open_streams: Callable[[], int], interval: float) -> None:
        self.hub = hub
        self.broker: Broker = hub.broker
        self.open_streams = open_streams
        self.interval = interval
        self.ttl = interval * EXPIRY_INTERVALS
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self._stopping = False
        self._wakeup = new_wakeup()
        self._failing = False
        self._task = Task(self._run, name="django-sse-presence")

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}"

    def snapshot(self) -> ProcessReport:
        """Return the report of this process as it is now."""
        return ProcessReport(
            host=self.host,
            pid=self.pid,
            started=self.started,
            reported=time.time(),
            streams=self.open_streams(),
            broker_connected=self.broker.is_connected(),
            channels={
                name: Presence(streams, users)
                for name, (streams, users) in self.hub.presence().items()
            },
        )

    def report(self) -> None:
        """Write the report now. Raises ``BrokerUnavailable`` when the broker cannot be reached."""
        self.broker.write_presence(self.key, self.snapshot().encode(), self.ttl)

    def _run(self) -> None:
        while not self._stopping and os.getpid() == self.pid:
            try:
                self.report()
            except BrokerUnavailable as exc:
                if not self._failing and not self._stopping:
                    self._failing = True
                    logger.warning(
                        "Could not write the presence report of %s (%s); retrying every %ss.",
                        self.key,
                        exc,
                        self.interval,
                    )
            else:
                if self._failing:
                    self._failing = False
                    logger.info("Presence reports of %s are written again.", self.key)
            self._wakeup.wait(self.interval)

    @property
    def alive(self) -> bool:
        return self._task.alive

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reporting; wait up to ``timeout`` seconds for the task to end."""
        self._stopping = True
        self._wakeup.set()
        self._task.join(timeout)


def read_reports() -> list[ProcessReport]:
    """Return the live report of every process on this process's broker.

    The in-process broker holds only this process's report, written afresh
    first. Raises ``BrokerUnavailable`` when the broker cannot be reached.
    """
    from .core import runtime

    broker = runtime.get_broker()
    if not broker.shared:
        reporter = runtime.presence_reporter()
        if reporter is not None:
            reporter.report()
    return decode_reports(broker.read_presence())


def channel_presence(channel: str) -> Presence:
    """Return how many streams read ``channel`` on every process, and their owners' keys.

    Counts are as fresh as the last reports (``SSE_PRESENCE_INTERVAL``).
    Raises ``InvalidChannel`` for a bad name (before reaching the broker),
    ``BrokerUnavailable`` when the broker cannot be reached.
    """
    validate_channel(channel)
    return presence_of(read_reports(), channel)


async def achannel_presence(channel: str) -> Presence:
    """Async version of ``channel_presence`` (runs it in a worker thread)."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(channel_presence)(channel)
