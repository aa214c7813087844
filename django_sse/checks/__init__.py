"""System checks for the library's settings (``django_sse.E0xx`` / ``W0xx``).

Registered in ``AppConfig.ready()``, so ``manage.py check``, ``runserver``
and ``migrate`` run them; every gunicorn worker runs them before it serves
(``run_startup_checks``, from ``servers.start()``), so a wrong
setting stops the server at start-up instead of failing at the first stream.
The broker settings' rules are the broker classes' own (``Broker.check``,
asked through ``brokers.registry``); this module holds the others.
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

from ..brokers import registry
from ..conf import DEFAULTS, setting_error, sse_settings
from ..core.channels import validate_channel
from ..exceptions import InvalidChannel
from ..grip.checks import check_grip
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
    "SSE_GRIP_RECOVERY_INTERVAL": (
        "E057",
        False,
        5,
        "a number of seconds of at least 5 (Pushpin's least), e.g. 300",
    ),
    "SSE_PUBLISH_REPLICAS": (
        "E044",
        False,
        0,
        "a non-negative integer: the replicas that must hold an event (0: don't wait)",
    ),
    "SSE_POSTGRES_POLL_INTERVAL": ("E064", False, 0.001, "a positive number of seconds, e.g. 1"),
    "SSE_POSTGRES_CLEANUP_INTERVAL": (
        "E065",
        False,
        0.001,
        "a positive number of seconds, e.g. 10",
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


def check_numbers() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting, (id_, nullable, minimum, expected) in _NUMBERS.items():
        value = sse_settings.raw(setting)
        if value is None and nullable:
            continue
        kind = numbers.Integral if setting in _INTEGERS else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
            errors.append(setting_error(id_, setting, value, expected))
    return errors


def check_broker() -> list[checks.CheckMessage]:
    """Check ``SSE_BROKER`` (E020), then ask every registered broker class about its settings.

    The Redis rules (E021-E024, E042-E049) are the Redis brokers' own
    (``RedisBroker.check``, ``RedisClusterBroker.check``); every class is
    asked, selected or not, since a setting given to a broker that is not
    selected is a mistake only its owner can name. Messages two classes
    share (their common settings) are reported once.
    """
    messages = registry.check_selection(sse_settings)
    for broker_class in registry.broker_classes():
        for message in broker_class.check(sse_settings):
            if message not in messages:
                messages.append(message)
    return messages


def check_channels() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting in ("SSE_DEFAULT_CHANNEL", "REDIS_SSEQUEUE_CHANEL_NAME"):
        value = sse_settings.raw(setting)
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
        patterns = sse_settings.raw(setting)
        if (
            isinstance(patterns, str)
            or not isinstance(patterns, (list, tuple, set, frozenset))
            or not all(isinstance(item, str) for item in patterns)
        ):
            errors.append(
                setting_error(
                    id_,
                    setting,
                    patterns,
                    f"a list of channel names or 'prefix*' patterns, e.g. {example}",
                )
            )
    for setting in ("SSE_HISTORY", "SSE_METRICS", "SSE_TUNE_GC"):
        if not isinstance(sse_settings.raw(setting), bool):
            errors.append(
                setting_error("E032", setting, sse_settings.raw(setting), "True or False")
            )
    reset_event = sse_settings.raw("SSE_RESET_EVENT")
    try:
        validate_event_name(reset_event)
        if not reset_event:
            raise ValueError
    except (TypeError, ValueError):
        errors.append(
            setting_error(
                "E033", "SSE_RESET_EVENT", reset_event, "an event name, e.g. 'stream-reset'"
            )
        )
    return errors


def check_channel_manager() -> list[checks.CheckMessage]:
    from django.utils.module_loading import import_string

    path = sse_settings.raw("SSE_CHANNEL_MANAGER")
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
    origins = sse_settings.raw("SSE_CORS_ALLOWED_ORIGINS")
    if isinstance(origins, str) or not isinstance(origins, (list, tuple)):
        errors.append(
            setting_error(
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
                    setting_error(
                        "E050",
                        "SSE_CORS_ALLOWED_ORIGINS",
                        origin,
                        f"a list of origins like 'https://app.example.com' ({problem})",
                    )
                )
    if not isinstance(sse_settings.raw("SSE_CORS_ALLOW_CREDENTIALS"), bool):
        errors.append(
            setting_error(
                "E051",
                "SSE_CORS_ALLOW_CREDENTIALS",
                sse_settings.raw("SSE_CORS_ALLOW_CREDENTIALS"),
                "True or False",
            )
        )
    headers = sse_settings.raw("SSE_CORS_ALLOWED_HEADERS")
    if (
        isinstance(headers, str)
        or not isinstance(headers, (list, tuple))
        or not all(isinstance(h, str) for h in headers)
    ):
        errors.append(
            setting_error(
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
    check_grip,
    check_unknown_settings,
    check_broker,
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
