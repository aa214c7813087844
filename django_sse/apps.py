from __future__ import annotations

from django.apps import AppConfig


class DjangoSseConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"

    def ready(self) -> None:
        from . import checks

        checks.register()
