"""``manage.py sse_status [CHANNEL] [--json]``: the processes serving streams, the busiest channels, presence."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...core.channels import validate_channel
from ...core.runtime import get_broker
from ...exceptions import BrokerUnavailable, InvalidChannel
from ...presence import ProcessReport, busiest_channels, decode_reports, presence_of

BUSIEST = 10


class Command(BaseCommand):
    help = (
        "Show the processes that serve streams, the busiest channels and, for CHANNEL, "
        "how many streams read it and whose (needs Redis)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel", nargs="?", help="Also show the presence on this channel.")
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object (for scripts)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        channel = options["channel"]
        if channel is not None:
            try:
                validate_channel(channel)
            except InvalidChannel as exc:
                raise CommandError(str(exc)) from None
        broker = get_broker()
        if not broker.shared:
            raise CommandError(
                "The in-process broker can only see the streams of its own process, and this "
                "command runs in another one: set SSE_REDIS_URL (e.g. 'redis://localhost:6379/0') "
                "in the settings."
            )
        try:
            reports = decode_reports(broker.read_presence())
        except BrokerUnavailable as exc:
            raise CommandError(str(exc)) from None
        status = _status(reports, channel)
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
        else:
            self.stdout.write(_text(status))


def _status(reports: list[ProcessReport], channel: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "processes": [
            {
                "host": report.host,
                "pid": report.pid,
                "since": _time(report.started),
                "reported": _time(report.reported),
                "streams": report.streams,
                "channels": len(report.channels),
                "broker": "connected" if report.broker_connected else "disconnected",
            }
            for report in reports
        ],
        "busiest_channels": [
            {"channel": name, "streams": presence.streams, "users": len(presence.users)}
            for name, presence in busiest_channels(reports, BUSIEST)
        ],
        "presence": None,
    }
    if channel is not None:
        presence = presence_of(reports, channel)
        status["presence"] = {
            "channel": channel,
            "streams": presence.streams,
            "users": sorted(presence.users),
        }
    return status


def _time(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _count(n: int, noun: str) -> str:
    """Return "1 stream", "2 streams"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _text(status: dict[str, Any]) -> str:
    processes = status["processes"]
    total = sum(process["streams"] for process in processes)
    lines = [f"Processes serving streams: {len(processes)} ({_count(total, 'stream')})"]
    if processes:
        header = ["HOST", "PID", "STREAMS", "CHANNELS", "BROKER", "SINCE"]
        lines += _table(
            [header]
            + [
                [
                    p["host"],
                    str(p["pid"]),
                    str(p["streams"]),
                    str(p["channels"]),
                    p["broker"],
                    p["since"],
                ]
                for p in processes
            ]
        )
    channels = status["busiest_channels"]
    lines += ["", f"Busiest channels (top {BUSIEST}):"]
    if channels:
        lines += _table(
            [["CHANNEL", "STREAMS", "USERS"]]
            + [[c["channel"], str(c["streams"]), str(c["users"])] for c in channels]
        )
    else:
        lines.append("  (none)")
    presence = status["presence"]
    if presence is not None:
        users = ", ".join(presence["users"]) or "(none)"
        lines += [
            "",
            f"Presence on {presence['channel']!r}: {_count(presence['streams'], 'stream')}, "
            f"{_count(len(presence['users']), 'user')}: {users}",
        ]
    return "\n".join(lines)
