"""Redis connection settings: the URL setting, the old django-sse dict turned into one, Sentinel addresses."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

SCHEMES = ("redis://", "rediss://", "unix://")


def url_from_legacy_settings(legacy: dict[str, Any]) -> str:
    """Return a URL for ``REDIS_SSEQUEUE_CONNECTION_SETTINGS`` (location, db, password)."""
    location = str(legacy.get("location", "localhost:6379"))
    db = int(legacy.get("db", 0) or 0)
    password = legacy.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    if location.startswith("unix:"):
        return f"unix://{auth}{location[len('unix:') :]}?db={db}"
    return f"redis://{auth}{location}/{db}"


def url_problem(url: object) -> str | None:
    """Return why ``url`` is not a usable Redis URL, or None when it is."""
    if not isinstance(url, str) or not url.startswith(SCHEMES):
        return "it must be a string starting with redis://, rediss:// or unix://"
    try:
        from redis.connection import parse_url
    except ImportError:
        return "the redis package is not installed (pip install 'django-sse[redis]')"
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def parse_sentinel(text: str) -> tuple[str, int]:
    """Return ``(host, port)`` of a ``"host:port"`` entry of ``SSE_REDIS_SENTINELS``.

    Raises ``ValueError`` naming the entry when it is not one (``[::1]:26379`` for IPv6).
    """
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not 'host:port'")
    return host, int(port)
