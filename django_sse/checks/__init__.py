"""System checks for the library's settings (``django_sse.E0xx`` / ``W0xx``).

Registered in ``AppConfig.ready()``, so ``manage.py check``, ``runserver``
and ``migrate`` run them; every gunicorn worker runs them before it serves
(``run_startup_checks``, from ``servers.gunicorn.attach()``), so a wrong
setting stops the server at start-up instead of failing at the first stream.
"""

from __future__ import annotations

import difflib
import functools
import logging
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from ..brokers.redis.url import parse_sentinel, url_from_legacy_settings, url_problem
from ..conf import DEFAULTS, sse_settings
from ..core.channels import validate_channel
from ..exceptions import InvalidChannel
from ..sse import validate_event_name
from ..stream.cors import origin_problem
from .deploy import check_broker_answers

logger = logging.getLogger(__name__)

# setting -> (id, whether None is allowed, minimum, what to write instead)
_NUMBERS = {
    "SSE_HEARTBEAT_INTERVAL": ("E001", False, 0.001, "a positive number of seconds, e.g. 15"),
    "SSE_RETRY": ("E002", True, 0, "a non-negative integer of milliseconds, e.g. 2000, or None"),
    "SSE_PUBLISH_TIMEOUT": ("E003", False, 0.001, "a positive number of seconds, e.g. 5"),
    "SSE_QUEUE_SIZE": ("E004", False, 1, "a positive integer (events), e.g. 2000"),
    "SSE_HISTORY_MAXLEN": ("E005", False, 1, "a positive integer (events per channel), e.g. 10000"),
    "SSE_HISTORY_TTL": ("E006", False, 0, "a non-negative number of seconds (0: no age limit)"),
    "SSE_MAX_STREAMS": ("E007", True, 1, "a positive integer, or None for no limit"),
    "SSE_MAX_LIFETIME": ("E008", True, 0.001, "a positive number of seconds, or None"),
    "SSE_MAX_CHANNELS": ("E009", False, 1, "a positive integer, e.g. 20"),
    "SSE_MAX_CHANNEL_LENGTH": ("E010", False, 1, "a positive integer, e.g. 200"),
    "SSE_MAX_EVENT_SIZE": ("E011", True, 1, "a positive integer of bytes, or None"),
    "SSE_RETRY_JITTER": ("E012", False, 0, "a non-negative fraction, e.g. 0.5 (0: no spread)"),
    "SSE_MAX_STREAMS_PER_USER": ("E013", True, 1, "a positive integer, e.g. 10, or None"),
    "SSE_PRESENCE_INTERVAL": ("E014", False, 0.001, "a positive number of seconds, e.g. 2"),
    "SSE_STREAM_BUFFER_BYTES": (
        "E053",
        False,
        1,
        "a positive integer of bytes, e.g. 4194304 (4 MiB)",
    ),
    "SSE_PUBLISH_REPLICAS": (
        "E044",
        False,
        0,
        "a non-negative integer: the replicas that must hold an event (0: don't wait)",
    ),
}
_INTEGERS = {
    "SSE_RETRY",
    "SSE_QUEUE_SIZE",
    "SSE_STREAM_BUFFER_BYTES",
    "SSE_HISTORY_MAXLEN",
    "SSE_MAX_STREAMS",
    "SSE_MAX_STREAMS_PER_USER",
    "SSE_MAX_CHANNELS",
    "SSE_MAX_CHANNEL_LENGTH",
    "SSE_MAX_EVENT_SIZE",
    "SSE_PUBLISH_REPLICAS",
}


def _error(id_: str, setting: str, value: Any, expected: str) -> checks.Error:
    return checks.Error(
        f"{setting} is {value!r}, which is not valid.",
        hint=f"Set {setting} to {expected}.",
        id=f"django_sse.{id_}",
    )


def check_numbers() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting, (id_, nullable, minimum, expected) in _NUMBERS.items():
        value = getattr(sse_settings, setting)
        if value is None and nullable:
            continue
        kind = numbers.Integral if setting in _INTEGERS else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
            errors.append(_error(id_, setting, value, expected))
    return errors


def check_broker() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    broker = sse_settings.SSE_BROKER
    if broker not in (None, "memory", "redis"):
        errors.append(
            _error(
                "E020",
                "SSE_BROKER",
                broker,
                "'redis', 'memory', or None (redis when SSE_REDIS_URL is set)",
            )
        )
    url = sse_settings.SSE_REDIS_URL
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
    legacy = sse_settings.REDIS_SSEQUEUE_CONNECTION_SETTINGS
    if legacy is not None and url is None:
        errors.extend(_check_legacy(legacy))
    if (
        broker == "redis"
        and url is None
        and legacy is None
        and not sse_settings.SSE_REDIS_SENTINELS
    ):
        errors.append(
            checks.Error(
                "SSE_BROKER is 'redis' but no Redis connection is configured.",
                hint="Set SSE_REDIS_URL = 'redis://localhost:6379/0' (or drop SSE_BROKER to use the in-process broker).",
                id="django_sse.E022",
            )
        )
    prefix = sse_settings.SSE_REDIS_PREFIX
    if not isinstance(prefix, str):
        errors.append(_error("E023", "SSE_REDIS_PREFIX", prefix, "a string, e.g. 'sse:'"))
    return errors


def _check_legacy(legacy: Any) -> list[checks.CheckMessage]:
    expected = (
        "a dict like {'location': 'localhost:6379', 'db': 0, 'password': None} "
        "(location may be 'unix:/path'), or use SSE_REDIS_URL = 'redis://localhost:6379/0'"
    )
    setting = "REDIS_SSEQUEUE_CONNECTION_SETTINGS"
    if not isinstance(legacy, dict) or set(legacy) - {"location", "db", "password"}:
        return [_error("E024", setting, legacy, expected)]
    try:
        problem = url_problem(url_from_legacy_settings(legacy))
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    location = str(legacy.get("location", "localhost:6379"))
    if not location.startswith("unix:"):
        host, _, port = location.rpartition(":")
        if not host or not port.isdigit():
            problem = problem or f"location {location!r} is not 'host:port'"
    return [_error("E024", setting, legacy, expected)] if problem else []


def check_sentinel() -> list[checks.CheckMessage]:
    """Check the Redis Sentinel settings (E042, E043)."""
    errors: list[checks.CheckMessage] = []
    sentinels = sse_settings.SSE_REDIS_SENTINELS
    service = sse_settings.SSE_REDIS_SENTINEL_SERVICE
    example = "a list of 'host:port' strings, e.g. ['sentinel-1:26379', 'sentinel-2:26379']"
    if isinstance(sentinels, str) or not isinstance(sentinels, (list, tuple)):
        errors.append(_error("E042", "SSE_REDIS_SENTINELS", sentinels, example))
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
    if sentinels and sse_settings.SSE_BROKER == "memory":
        errors.append(
            checks.Error(
                "SSE_REDIS_SENTINELS is set but SSE_BROKER is 'memory'.",
                hint="Set SSE_BROKER = 'redis' (or None), or remove SSE_REDIS_SENTINELS.",
                id="django_sse.E042",
            )
        )
    url = sse_settings.redis_url
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
        errors.append(_error("E043", "SSE_REDIS_SENTINEL_SERVICE", service, service_expected))
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
    password = sse_settings.SSE_REDIS_SENTINEL_PASSWORD
    if password is not None and not isinstance(password, str):
        errors.append(
            _error(
                "E043",
                "SSE_REDIS_SENTINEL_PASSWORD",
                password,
                "the sentinels' own password (a string), or None when they have none",
            )
        )
    return errors


def check_channels() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting in ("SSE_DEFAULT_CHANNEL", "REDIS_SSEQUEUE_CHANEL_NAME"):
        value = getattr(sse_settings, setting)
        if value is None and setting == "SSE_DEFAULT_CHANNEL":
            continue
        try:
            validate_channel(value)
        except InvalidChannel as exc:
            errors.append(
                checks.Error(
                    f"{setting} is {value!r}: {exc}",
                    hint=f"Set {setting} to a channel name without whitespace, e.g. 'sse'.",
                    id="django_sse.E030",
                )
            )
    for id_, setting, example in (
        ("E031", "SSE_EPHEMERAL_CHANNELS", "['typing-*']"),
        ("E034", "SSE_LATEST_VALUE_CHANNELS", "['prices', 'status-*']"),
    ):
        patterns = getattr(sse_settings, setting)
        if (
            isinstance(patterns, str)
            or not isinstance(patterns, (list, tuple, set, frozenset))
            or not all(isinstance(item, str) for item in patterns)
        ):
            errors.append(
                _error(
                    id_,
                    setting,
                    patterns,
                    f"a list of channel names or 'prefix*' patterns, e.g. {example}",
                )
            )
    for setting in ("SSE_HISTORY", "SSE_METRICS"):
        if not isinstance(getattr(sse_settings, setting), bool):
            errors.append(_error("E032", setting, getattr(sse_settings, setting), "True or False"))
    reset_event = sse_settings.SSE_RESET_EVENT
    try:
        validate_event_name(reset_event)
        if not reset_event:
            raise ValueError
    except (TypeError, ValueError):
        errors.append(
            _error("E033", "SSE_RESET_EVENT", reset_event, "an event name, e.g. 'stream-reset'")
        )
    return errors


def check_channel_manager() -> list[checks.CheckMessage]:
    from django.utils.module_loading import import_string

    path = sse_settings.SSE_CHANNEL_MANAGER
    if path is None:
        return []
    try:
        manager = import_string(path)
    except (ImportError, TypeError, ValueError) as exc:
        return [
            checks.Error(
                f"SSE_CHANNEL_MANAGER is {path!r}, which cannot be imported: {exc}",
                hint="Set SSE_CHANNEL_MANAGER to the dotted path of a django_sse.permissions.ChannelManager subclass.",
                id="django_sse.E040",
            )
        ]
    missing = [
        name
        for name in ("get_channels_for_request", "can_read_channel")
        if not hasattr(manager, name)
    ]
    if missing:
        return [
            checks.Error(
                f"SSE_CHANNEL_MANAGER {path!r} lacks {', '.join(missing)}.",
                hint="Subclass django_sse.permissions.ChannelManager.",
                id="django_sse.E041",
            )
        ]
    return []


def check_cors() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    origins = sse_settings.SSE_CORS_ALLOWED_ORIGINS
    if isinstance(origins, str) or not isinstance(origins, (list, tuple)):
        errors.append(
            _error(
                "E050",
                "SSE_CORS_ALLOWED_ORIGINS",
                origins,
                "a list of origins, e.g. ['https://app.example.com'] (a list, not one string)",
            )
        )
    else:
        for origin in origins:
            if problem := origin_problem(origin):
                errors.append(
                    _error(
                        "E050",
                        "SSE_CORS_ALLOWED_ORIGINS",
                        origin,
                        f"a list of origins like 'https://app.example.com' ({problem})",
                    )
                )
    if not isinstance(sse_settings.SSE_CORS_ALLOW_CREDENTIALS, bool):
        errors.append(
            _error(
                "E051",
                "SSE_CORS_ALLOW_CREDENTIALS",
                sse_settings.SSE_CORS_ALLOW_CREDENTIALS,
                "True or False",
            )
        )
    headers = sse_settings.SSE_CORS_ALLOWED_HEADERS
    if (
        isinstance(headers, str)
        or not isinstance(headers, (list, tuple))
        or not all(isinstance(h, str) for h in headers)
    ):
        errors.append(
            _error(
                "E052",
                "SSE_CORS_ALLOWED_HEADERS",
                headers,
                "a list of header names, e.g. ['last-event-id']",
            )
        )
    return errors


def check_memory_broker_workers(workers: int) -> list[checks.CheckMessage]:
    """Warn when the in-process broker runs under a server with several workers."""
    if workers > 1 and sse_settings.broker_name == "memory":
        return [
            checks.Warning(
                f"The in-process broker is used by a server with {workers} workers: an event "
                "published in one worker reaches only the streams of that worker.",
                hint="Set SSE_REDIS_URL = 'redis://localhost:6379/0' to share events between workers.",
                id="django_sse.W001",
            )
        ]
    return []


def check_cluster() -> list[checks.CheckMessage]:
    """SSE_REDIS_CLUSTER: a bool, with a Redis broker on a TCP URL, not with Sentinel."""
    cluster = sse_settings.SSE_REDIS_CLUSTER
    if not isinstance(cluster, bool):
        return [_error("E045", "SSE_REDIS_CLUSTER", cluster, "True or False")]
    if not cluster:
        return []
    errors: list[checks.CheckMessage] = []
    if sse_settings.broker_name == "memory":
        errors.append(
            checks.Error(
                "SSE_REDIS_CLUSTER is True but the broker is the in-process one (SSE_BROKER "
                "is 'memory', or no SSE_REDIS_URL is set).",
                hint="Set SSE_REDIS_URL to a node of the cluster, e.g. 'redis://node-1:6379/0', "
                "and drop SSE_BROKER = 'memory' (or set SSE_REDIS_CLUSTER = False).",
                id="django_sse.E046",
            )
        )
    if sse_settings.SSE_REDIS_SENTINELS:
        errors.append(
            checks.Error(
                "SSE_REDIS_CLUSTER and SSE_REDIS_SENTINELS are both set; a deployment is one or the other.",
                hint="Keep SSE_REDIS_CLUSTER = True for a Redis Cluster, or drop it to use Sentinel.",
                id="django_sse.E047",
            )
        )
    url = sse_settings.redis_url
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
    prefix = sse_settings.SSE_REDIS_PREFIX
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


def check_unknown_settings() -> list[checks.CheckMessage]:
    """Warn of an ``SSE_*`` setting the library does not know (a misspelling is read by nobody)."""
    known = [name for name in DEFAULTS if name.startswith("SSE_")]
    warnings: list[checks.CheckMessage] = []
    for name in sorted(dir(django_settings)):
        if not name.startswith("SSE_") or name in DEFAULTS:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        guess = f"; the closest one is {close[0]}." if close else "."
        warnings.append(
            checks.Warning(
                f"{name} is not a django-sse setting{guess}",
                hint=(
                    "django-sse reads only the settings of its settings reference and ignores "
                    "a misspelt one: correct the name. If another app reads this setting, "
                    "silence this warning: SILENCED_SYSTEM_CHECKS = ['django_sse.W004']."
                ),
                id="django_sse.W004",
            )
        )
    return warnings


ALL_CHECKS = (
    check_numbers,
    check_unknown_settings,
    check_broker,
    check_sentinel,
    check_cluster,
    check_channels,
    check_channel_manager,
    check_cors,
)


def register() -> None:
    """Register every check with Django; again (apps populated anew) registers nothing twice."""
    for check in ALL_CHECKS:
        checks.register(_as_check(check), "django_sse")
    checks.register(_as_check(check_broker_answers), "django_sse", deploy=True)


@functools.cache
def _as_check(
    function: Callable[[], list[checks.CheckMessage]],
) -> Callable[..., list[checks.CheckMessage]]:
    def check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
        return function()

    check.__name__ = function.__name__
    return check


def run_startup_checks(workers: int = 1, extra: Sequence[checks.CheckMessage] = ()) -> None:
    """Run every check of the library; raise ``ImproperlyConfigured`` on errors, log warnings.

    ``extra`` adds messages found elsewhere (the gunicorn worker's settings).
    """
    messages = [message for check in ALL_CHECKS for message in check()]
    messages += check_memory_broker_workers(workers)
    messages += list(extra)
    for message in messages:
        if not message.is_serious():
            logger.warning("%s", message)
    errors = [message for message in messages if message.is_serious()]
    if errors:
        raise ImproperlyConfigured("\n".join(str(message) for message in errors))
