"""Presence, this process's side: the report of its streams, and the task that writes it.

``PresenceReporter`` runs in every process that has a hub (``runtime.get_hub()``
starts it): every ``SSE_PRESENCE_INTERVAL`` seconds it writes one
``ProcessReport`` to the broker (``Broker.write_presence``), kept for
``EXPIRY_INTERVALS`` intervals, so the streams of a process that dies
without a word vanish on their own. Reading the reports of every process
is ``django_sse.presence``'s job.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..brokers.base import Broker
from ..exceptions import BrokerUnavailable
from .concurrency import Task, new_wakeup
from .hub import Hub

# The name users configure in LOGGING for presence, wherever the code lives.
logger = logging.getLogger("django_sse.presence")

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
        return self.encode_with(encode_channels(self.channels))

    def encode_with(self, channels_json: str) -> str:
        """Return the report as JSON, its ``channels`` being ``channels_json`` (from ``encode_channels``)."""
        head = json.dumps(
            {
                "v": REPORT_VERSION,
                "host": self.host,
                "pid": self.pid,
                "started": self.started,
                "reported": self.reported,
                "streams": self.streams,
                "broker_connected": self.broker_connected,
            },
            separators=(",", ":"),
        )
        return f'{head[:-1]},"channels":{channels_json}}}'

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


def encode_channels(channels: dict[str, Presence]) -> str:
    """Return the ``channels`` member of a report as JSON."""
    return json.dumps(
        {
            name: {"streams": presence.streams, "users": sorted(presence.users)}
            for name, presence in channels.items()
        },
        separators=(",", ":"),
    )


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
        # The channels part of the last report, and the hub's membership it was taken at.
        self._channels_json = "{}"
        self._membership: int | None = None
        self._task = Task(self._run, name="django-sse-presence")

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}"

    def snapshot(self) -> ProcessReport:
        """Return the report of this process as it is now."""
        return self._report(self._channels())

    def _channels(self) -> dict[str, Presence]:
        """Each channel's presence in this process, from the hub's walk of its streams."""
        return {
            name: Presence(streams, users) for name, (streams, users) in self.hub.presence().items()
        }

    def _report(self, channels: dict[str, Presence]) -> ProcessReport:
        return ProcessReport(
            host=self.host,
            pid=self.pid,
            started=self.started,
            reported=time.time(),
            streams=self.open_streams(),
            broker_connected=self.broker.is_connected(),
            channels=channels,
        )

    def report(self) -> None:
        """Write the report now. Raises ``BrokerUnavailable`` when the broker cannot be reached.

        The channels part is walked and encoded again only when a stream
        came or went since the last report (with 10,000 channels, a walk
        and its JSON cost tens of milliseconds every interval).
        """
        membership = self.hub.membership  # read first: a later change only makes it re-encode
        if membership != self._membership:
            self._channels_json = encode_channels(self._channels())
            self._membership = membership
        text = self._report({}).encode_with(self._channels_json)
        self.broker.write_presence(self.key, text, self.ttl)

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
