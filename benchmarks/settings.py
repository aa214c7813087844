"""Settings of the benchmark publisher: send_event to the Redis the driver started."""

import os

SECRET_KEY = "django-sse-benchmarks"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_sse"]
DATABASES = {}
SSE_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
