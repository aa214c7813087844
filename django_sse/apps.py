from __future__ import annotations

from django.apps import AppConfig


class DjangoSseConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"

    def ready(self) -> None:
        from . import checks, gunicorn_worker

        checks.register()
        # In a gunicorn worker: check settings, warn about gunicorn's, end streams on stop.
        gunicorn_worker.attach()
