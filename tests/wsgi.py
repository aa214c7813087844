"""WSGI entry of the test project, for servers the tests start."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
