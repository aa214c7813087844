"""ASGI entry of the test project, for the ASGI servers the tests start (uvicorn, daphne)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
