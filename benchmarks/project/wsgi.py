"""WSGI entry of the benchmarked server: ``gunicorn -c gunicorn.conf.py benchmarks.project.wsgi``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
