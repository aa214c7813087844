from urllib.parse import urlsplit

from django_sse.conf import sse_settings


def broker(request):
    """Tell every page which broker serves the streams, and whether other processes reach it."""
    if sse_settings.broker_name == "redis":
        url = urlsplit(sse_settings.redis_url)
        where = url.path if url.scheme == "unix" else f"{url.hostname}:{url.port or 6379}"
        return {"broker_name": f"Redis at {where}", "broker_shared": True}
    return {"broker_name": "in-process (memory)", "broker_shared": False}
