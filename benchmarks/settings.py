"""Settings of the benchmark publisher: send_event to the Redis (or cluster) the driver started."""

import os

SECRET_KEY = "django-sse-benchmarks"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_sse"]
DATABASES = {}
SSE_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# BENCH_REDIS_CLUSTER=1: the URL names a node of a Redis Cluster (``--redis cluster``).
SSE_REDIS_CLUSTER = os.environ.get("BENCH_REDIS_CLUSTER") == "1"
