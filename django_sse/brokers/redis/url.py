"""Redis connection settings: checking the URL setting, parsing Sentinel addresses.

The old django-sse dict is turned into a URL by ``django_sse.conf.url_from_legacy_settings``.
"""

from __future__ import annotations

SCHEMES = ("redis://", "rediss://", "unix://")


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
