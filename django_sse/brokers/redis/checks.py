"""The system checks of the Redis brokers' settings (``django_sse.E021``-``E024``, ``E042``-``E049``).

``RedisBroker.check()`` and ``RedisClusterBroker.check()`` return these;
``django_sse.checks`` asks the broker classes and holds no Redis rule itself.
Every function reads the settings only: none imports redis-py at module
level or connects anywhere (``manage.py check --deploy`` is what reaches out).
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from ...conf import Settings, setting_error, url_from_legacy_settings
from .url import parse_sentinel, url_problem


def check_connection(settings: Settings) -> list[checks.CheckMessage]:
    """Check SSE_REDIS_URL, the old settings dict and SSE_REDIS_PREFIX (E021-E024)."""
    errors: list[checks.CheckMessage] = []
    url = settings.raw("SSE_REDIS_URL")
    if url is not None and (problem := url_problem(url)):
        hint = "Set SSE_REDIS_URL to e.g. 'redis://localhost:6379/0', 'rediss://host:6380/0' or 'unix:///run/redis.sock'"
        if isinstance(url, str) and not url.strip():
            # The environment-variable pattern, os.environ.get("REDIS_URL", ""), with none set.
            hint += (
                ", or to None (the default) for the in-process broker: e.g. "
                "SSE_REDIS_URL = os.environ.get('REDIS_URL') or None"
            )
        errors.append(
            checks.Error(
                f"SSE_REDIS_URL is {url!r}: {problem}.", hint=hint + ".", id="django_sse.E021"
            )
        )
    legacy = settings.raw("REDIS_SSEQUEUE_CONNECTION_SETTINGS")
    if legacy is not None and url is None:
        errors.extend(_check_legacy(legacy))
    if (
        settings.raw("SSE_BROKER") == "redis"
        and url is None
        and legacy is None
        and not settings.raw("SSE_REDIS_SENTINELS")
    ):
        errors.append(
            checks.Error(
                "SSE_BROKER is 'redis' but no Redis connection is configured.",
                hint="Set SSE_REDIS_URL = 'redis://localhost:6379/0' (or drop SSE_BROKER to use the in-process broker).",
                id="django_sse.E022",
            )
        )
    prefix = settings.raw("SSE_REDIS_PREFIX")
    if not isinstance(prefix, str):
        errors.append(setting_error("E023", "SSE_REDIS_PREFIX", prefix, "a string, e.g. 'sse:'"))
    return errors


def _check_legacy(legacy: Any) -> list[checks.CheckMessage]:
    expected = (
        "a dict like {'location': 'localhost:6379', 'db': 0, 'password': None} "
        "(location may be 'unix:/path'), or use SSE_REDIS_URL = 'redis://localhost:6379/0'"
    )
    setting = "REDIS_SSEQUEUE_CONNECTION_SETTINGS"
    if not isinstance(legacy, dict) or set(legacy) - {"location", "db", "password"}:
        return [setting_error("E024", setting, legacy, expected)]
    try:
        problem = url_problem(url_from_legacy_settings(legacy))
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    location = str(legacy.get("location", "localhost:6379"))
    if not location.startswith("unix:"):
        host, _, port = location.rpartition(":")
        if not host or not port.isdigit():
            problem = problem or f"location {location!r} is not 'host:port'"
    return [setting_error("E024", setting, legacy, expected)] if problem else []


def check_sentinel(settings: Settings) -> list[checks.CheckMessage]:
    """Check the Redis Sentinel settings (E042, E043)."""
    errors: list[checks.CheckMessage] = []
    sentinels = settings.raw("SSE_REDIS_SENTINELS")
    service = settings.raw("SSE_REDIS_SENTINEL_SERVICE")
    example = "a list of 'host:port' strings, e.g. ['sentinel-1:26379', 'sentinel-2:26379']"
    if isinstance(sentinels, str) or not isinstance(sentinels, (list, tuple)):
        errors.append(setting_error("E042", "SSE_REDIS_SENTINELS", sentinels, example))
        sentinels = ()
    for entry in sentinels:
        try:
            parse_sentinel(entry if isinstance(entry, str) else "")
        except ValueError:
            errors.append(
                checks.Error(
                    f"SSE_REDIS_SENTINELS holds {entry!r}, which is not 'host:port'.",
                    hint=f"Set SSE_REDIS_SENTINELS to {example}.",
                    id="django_sse.E042",
                )
            )
    if sentinels and settings.raw("SSE_BROKER") == "memory":
        errors.append(
            checks.Error(
                "SSE_REDIS_SENTINELS is set but SSE_BROKER is 'memory'.",
                hint="Set SSE_BROKER = 'redis' (or None), or remove SSE_REDIS_SENTINELS.",
                id="django_sse.E042",
            )
        )
    url = settings.redis_url
    if sentinels and url and url.startswith("unix://"):
        errors.append(
            checks.Error(
                f"SSE_REDIS_URL is {url!r}, a Unix socket, but SSE_REDIS_SENTINELS is set.",
                hint="With Sentinel, set SSE_REDIS_URL to 'redis://:PASSWORD@SERVICE/0' (its host "
                "and port are ignored: the sentinels name the master), or leave it unset.",
                id="django_sse.E042",
            )
        )
    service_expected = "the master's name in the sentinels' config, e.g. 'mymaster'"
    if service is not None and (not isinstance(service, str) or not service or " " in service):
        errors.append(
            setting_error("E043", "SSE_REDIS_SENTINEL_SERVICE", service, service_expected)
        )
    elif sentinels and service is None:
        errors.append(
            checks.Error(
                "SSE_REDIS_SENTINELS is set but SSE_REDIS_SENTINEL_SERVICE is not.",
                hint=f"Set SSE_REDIS_SENTINEL_SERVICE to {service_expected}.",
                id="django_sse.E043",
            )
        )
    elif service is not None and not sentinels:
        errors.append(
            checks.Error(
                "SSE_REDIS_SENTINEL_SERVICE is set but SSE_REDIS_SENTINELS is empty.",
                hint="Set SSE_REDIS_SENTINELS to the sentinels' addresses, e.g. ['sentinel-1:26379'].",
                id="django_sse.E043",
            )
        )
    password = settings.raw("SSE_REDIS_SENTINEL_PASSWORD")
    if password is not None and not isinstance(password, str):
        errors.append(
            setting_error(
                "E043",
                "SSE_REDIS_SENTINEL_PASSWORD",
                password,
                "the sentinels' own password (a string), or None when they have none",
            )
        )
    return errors


def check_cluster(settings: Settings) -> list[checks.CheckMessage]:
    """Check SSE_REDIS_CLUSTER: a bool, with a Redis broker on a TCP URL, not with Sentinel (E045-E049)."""
    cluster = settings.raw("SSE_REDIS_CLUSTER")
    if not isinstance(cluster, bool):
        return [setting_error("E045", "SSE_REDIS_CLUSTER", cluster, "True or False")]
    if not cluster:
        return []
    errors: list[checks.CheckMessage] = []
    if settings.broker_name == "memory":
        errors.append(
            checks.Error(
                "SSE_REDIS_CLUSTER is True but the broker is the in-process one (SSE_BROKER "
                "is 'memory', or no SSE_REDIS_URL is set).",
                hint="Set SSE_REDIS_URL to a node of the cluster, e.g. 'redis://node-1:6379/0', "
                "and drop SSE_BROKER = 'memory' (or set SSE_REDIS_CLUSTER = False).",
                id="django_sse.E046",
            )
        )
    if settings.raw("SSE_REDIS_SENTINELS"):
        errors.append(
            checks.Error(
                "SSE_REDIS_CLUSTER and SSE_REDIS_SENTINELS are both set; a deployment is one or the other.",
                hint="Keep SSE_REDIS_CLUSTER = True for a Redis Cluster, or drop it to use Sentinel.",
                id="django_sse.E047",
            )
        )
    url = settings.redis_url
    if isinstance(url, str) and not url.startswith(("redis://", "rediss://")):
        errors.append(
            checks.Error(
                f"SSE_REDIS_CLUSTER is True but the Redis URL {url!r} is not a TCP one "
                "(a cluster's nodes are reached over TCP).",
                hint="Set SSE_REDIS_URL to a node of the cluster, e.g. 'redis://node-1:6379/0'.",
                id="django_sse.E048",
            )
        )
    elif isinstance(url, str) and _database_of(url) not in (None, 0):
        errors.append(
            checks.Error(
                f"SSE_REDIS_CLUSTER is True but the Redis URL {url!r} names a database other than 0.",
                hint="A cluster has database 0 only: end SSE_REDIS_URL with /0 (or nothing).",
                id="django_sse.E048",
            )
        )
    prefix = settings.raw("SSE_REDIS_PREFIX")
    if isinstance(prefix, str) and ("{" in prefix or "}" in prefix):
        errors.append(
            checks.Error(
                f"SSE_REDIS_PREFIX is {prefix!r}: with SSE_REDIS_CLUSTER, a brace in it would "
                "be taken as the hash tag and put every channel in one slot.",
                hint="Set SSE_REDIS_PREFIX to a string without '{' or '}', e.g. 'sse:'.",
                id="django_sse.E049",
            )
        )
    return errors


def _database_of(url: str) -> int | None:
    """Return the database a Redis URL names (None: none, or the URL is unusable: E021 says)."""
    try:
        from redis.connection import parse_url

        db = parse_url(url).get("db")  # type: ignore[no-untyped-call]
    except (ImportError, ValueError, TypeError):
        return None
    return None if db is None else int(db)
