from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class DjangoSseConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"

    def ready(self) -> None:
        from . import checks
        from .core import runtime
        from .servers import asgi as asgi_server
        from .servers import gunicorn as gunicorn_worker

        checks.register()
        setting_changed.connect(runtime.on_setting_changed, dispatch_uid="django_sse.core.runtime")
        # In a gunicorn worker: check settings, warn about gunicorn's, end streams on stop.
        if not gunicorn_worker.attach():
            asgi_server.attach()  # under uvicorn: check settings as the application loads
