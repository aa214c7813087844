from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class DjangoSseConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"

    def ready(self) -> None:
        from . import checks, servers
        from .core import runtime

        checks.register()
        setting_changed.connect(runtime.on_setting_changed, dispatch_uid="django_sse.core.runtime")
        # Under a server: check settings, warn about the server's, end streams on its stop.
        servers.start()
