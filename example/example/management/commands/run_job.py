"""``manage.py run_job JOB_ID``: run a long job in this process; its page shows the progress live."""

from django.core.management.base import BaseCommand, CommandError

from django_sse.core.runtime import get_broker

from ...publishers import run_job


class Command(BaseCommand):
    help = "Run a fake long job, publishing its progress to the channel job-JOB_ID (needs Redis)."

    def add_arguments(self, parser):
        parser.add_argument("job_id", help="Letters, digits, - or _; the page is /jobs/JOB_ID/.")
        parser.add_argument("--steps", type=int, default=20)
        parser.add_argument("--delay", type=float, default=0.5, help="Seconds per step.")

    def handle(self, *args, job_id, steps, delay, **options):
        if not get_broker().shared:
            raise CommandError(
                "The in-process broker cannot reach the web server from this command. Set "
                "REDIS_URL (e.g. REDIS_URL=redis://localhost:6379/0) for both, or press "
                "'Run it in the server' on the job's page."
            )
        run_job(job_id, steps=steps, delay=delay, report=self.stdout.write)
        self.stdout.write(self.style.SUCCESS(f"{job_id}: done"))
