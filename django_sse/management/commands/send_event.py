"""``manage.py send_event CHANNEL EVENT DATA``: publish one event from the command line."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...core.runtime import get_broker
from ...exceptions import SseError
from ...publish import send_event


class Command(BaseCommand):
    help = "Publish one Server-Sent Event to every stream reading CHANNEL (needs Redis)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel")
        parser.add_argument("event")
        parser.add_argument("data")
        parser.add_argument(
            "--json", action="store_true", help="Parse DATA as JSON and send it JSON-encoded."
        )
        parser.add_argument(
            "--no-history", action="store_true", help="Do not record the event for replay."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not get_broker().shared:
            raise CommandError(
                "The in-process broker cannot reach the streams of the web server from this "
                "command: set SSE_REDIS_URL (e.g. 'redis://localhost:6379/0') in the settings."
            )
        data: Any = options["data"]
        if options["json"]:
            try:
                parsed = json.loads(data)
            except json.JSONDecodeError as exc:
                raise CommandError(f"DATA is not valid JSON: {exc}") from None
            # A string is sent as data verbatim: keep its quotes, so the client's
            # JSON.parse() gets the string back, as it gets any other value back.
            data = json.dumps(parsed) if isinstance(parsed, str) else parsed
        try:
            event_id = send_event(
                options["event"],
                data,
                options["channel"],
                history=False if options["no_history"] else None,
            )
        except (SseError, ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(event_id or "published (no history)")
