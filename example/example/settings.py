"""Settings of the example project.

The in-process broker serves it out of the box; set REDIS_URL (e.g.
``redis://localhost:6379/0``) to publish through Redis, so that
``manage.py send_event`` and ``manage.py run_job`` reach the pages from
another process and streams resume across server restarts.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("SECRET_KEY", "django-sse-example-not-secret")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "example.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "django_sse",
    "example",
]
MIDDLEWARE = [
    # Static files (the example's CSS and JavaScript, django-sse's browser client), as a
    # production site serves them without a web server in front: collected by
    # ``manage.py collectstatic`` into STATIC_ROOT (./scripts/example does it), then
    # served by WhiteNoise under gunicorn and uvicorn alike.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # GZip stays on to show that streams are never compressed (they would be buffered).
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csrf",
                "example.context_processors.broker",
            ]
        },
    }
]
# No model of the example uses the database; Django only needs one configured.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic puts them (the tests collect into a directory of their own).
STATIC_ROOT = os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_sse": {"handlers": ["console"], "level": "INFO"}},
}

# django-sse: Redis when REDIS_URL is set, else the in-process broker.
if os.environ.get("REDIS_URL"):
    SSE_REDIS_URL = os.environ["REDIS_URL"]
