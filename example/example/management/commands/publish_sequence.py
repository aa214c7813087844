"""``manage.py publish_sequence``: numbered messages for the reconnect page, from another process."""

from django.core.management.base import BaseCommand, CommandError

from django_sse.core.runtime import get_broker

from ...publishers import publish_sequence


class Command(BaseCommand):
    help = "Publish messages numbered 1..COUNT to the channel 'sequence' (needs Redis)."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=60)
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between messages.")

    def handle(self, *args, count, interval, **options):
        if not get_broker().shared:
            raise CommandError(
                "The in-process broker cannot reach the web server from this command. Set "
                "REDIS_URL (e.g. REDIS_URL=redis://localhost:6379/0) for both, or press "
                "'Publish from the server' on the reconnect page."
            )
        publish_sequence(count, interval, report=self.stdout.write)
