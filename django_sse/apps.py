from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class DjangoSseConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"

    def ready(self) -> None:
        from . import asgi_server, checks, gunicorn_worker, runtime

        checks.register()
        setting_changed.connect(runtime.on_setting_changed, dispatch_uid="django_sse.runtime")
        # In a gunicorn worker: check settings, warn about gunicorn's, end streams on stop.
        if not gunicorn_worker.attach():
            asgi_server.attach()  # under uvicorn: check settings as the application loads
