"""Presence: how many streams read a channel, and whose, across every process and host.

Each process that has a hub runs one ``PresenceReporter`` (``core.presence``),
which writes a report of its streams to the broker every
``SSE_PRESENCE_INTERVAL`` seconds. ``channel_presence()`` reads every live
report (``Broker.read_presence``) and adds them up. The cost to the broker
is one write per process per interval, however many streams the process serves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .core import runtime
from .core.channels import validate_channel
from .core.concurrency import offload
from .core.presence import EXPIRY_INTERVALS, Presence, PresenceReporter, ProcessReport

__all__ = [
    "EXPIRY_INTERVALS",
    "Presence",
    "PresenceReporter",
    "ProcessReport",
    "achannel_presence",
    "busiest_channels",
    "channel_presence",
    "decode_reports",
    "presence_of",
    "read_reports",
]

logger = logging.getLogger(__name__)


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


def read_reports() -> list[ProcessReport]:
    """Return the live report of every process on this process's broker.

    The in-process broker holds only this process's report, written afresh
    first. Raises ``BrokerUnavailable`` when the broker cannot be reached.
    """
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
    """Async ``channel_presence``: the same result and errors, without blocking the event loop.

    The broker is read on the runtime's executor (``core.concurrency.offload``),
    not in the thread of sync views (``sync_to_async``'s default), so it
    never waits behind them. Pitfall: cancelling the await does not stop a
    read under way; its result is dropped.
    """
    return await offload(channel_presence, channel)
