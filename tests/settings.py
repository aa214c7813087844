"""Settings of the test project. Redis is used when DJANGO_SSE_TEST_REDIS_URL is set."""

import json
import os

SECRET_KEY = "django-sse-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_sse",
]
MIDDLEWARE = [
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SSE_TEST_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATIC_URL = (
    "/static/"  # the live server (django_sse.testing.live_events tests) serves static files
)
SSE_HEARTBEAT_INTERVAL = float(os.environ.get("DJANGO_SSE_TEST_HEARTBEAT", "15"))
if os.environ.get("DJANGO_SSE_TEST_QUEUE_SIZE"):
    SSE_QUEUE_SIZE = int(os.environ["DJANGO_SSE_TEST_QUEUE_SIZE"])
if os.environ.get("DJANGO_SSE_TEST_BAD_SETTING"):  # test_checks: a server must refuse to start
    SSE_HEARTBEAT_INTERVAL = -1
if os.environ.get("DJANGO_SSE_TEST_REDIS_URL"):
    SSE_REDIS_URL = os.environ["DJANGO_SSE_TEST_REDIS_URL"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_sse": {"handlers": ["console"], "level": "INFO"}},
}
# Any other settings a test's server needs, as JSON, e.g. '{"SSE_MAX_CHANNELS": 45}'.
globals().update(json.loads(os.environ.get("DJANGO_SSE_TEST_SETTINGS", "{}")))
