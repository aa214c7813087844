"""Settings of the benchmarked server: a small project, Redis from the driver."""

import os

SECRET_KEY = "django-sse-benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "benchmarks.project.urls"
INSTALLED_APPS = ["django_sse"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
SSE_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# BENCH_REDIS_CLUSTER=1: the URL names a node of a Redis Cluster (``--redis cluster``).
SSE_REDIS_CLUSTER = os.environ.get("BENCH_REDIS_CLUSTER") == "1"
# Off unless the server asks (library-metrics): the other servers measure the
# library as it runs without the metrics extra.
SSE_METRICS = os.environ.get("BENCH_METRICS") == "1"
# The library-grip kind: Pushpin's control API (GRIP mode); unset elsewhere.
SSE_GRIP_URL = os.environ.get("BENCH_GRIP_URL") or None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # BENCH_SSE_LOG_LEVEL=DEBUG shows, e.g., history reads that failed and wait for a retry.
    "loggers": {
        "django_sse": {
            "handlers": ["console"],
            "level": os.environ.get("BENCH_SSE_LOG_LEVEL", "WARNING"),
        }
    },
}
