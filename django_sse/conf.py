"""Library settings, read lazily from ``django.conf.settings`` with defaults.

A value is read from Django settings on first use and then kept: a stream
reads several settings as it opens, and Django's lazy settings cost a lookup
each time. Django sends ``setting_changed`` when a test overrides a setting
(``override_settings``, pytest-django's ``settings``), and this module drops
its cached values then, so overrides work as usual.
Pitfall: assigning to ``django.conf.settings`` at run time, which Django
does not support anyway, is not seen. Validation lives in ``checks.py``: a wrong value fails the
system checks at start-up with a message naming the setting.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    "SSE_BROKER": None,  # "memory" or "redis"; None: redis when a Redis URL is set
    "SSE_REDIS_URL": None,
    "SSE_REDIS_PREFIX": "sse:",
    "SSE_REDIS_CLUSTER": False,  # True: SSE_REDIS_URL names a node of a Redis Cluster
    "SSE_DEFAULT_CHANNEL": None,  # falls back to the old REDIS_SSEQUEUE_CHANEL_NAME, then "sse"
    "SSE_HEARTBEAT_INTERVAL": 15.0,
    "SSE_RETRY": 2000,
    "SSE_RETRY_JITTER": 0.5,  # shutdown/lifetime hints: SSE_RETRY x (1 + up to this)
    "SSE_PUBLISH_TIMEOUT": 5.0,
    "SSE_QUEUE_SIZE": 2000,
    "SSE_STREAM_BUFFER_BYTES": 4 * 1024 * 1024,  # what one stream may hold for its client
    "SSE_HISTORY": True,
    "SSE_EPHEMERAL_CHANNELS": (),
    "SSE_LATEST_VALUE_CHANNELS": (),  # a new client first gets the newest event of these
    "SSE_HISTORY_MAXLEN": 10_000,
    "SSE_HISTORY_TTL": 24 * 3600,
    "SSE_RESET_EVENT": "stream-reset",
    "SSE_METRICS": True,  # with the metrics extra (prometheus_client); False turns them off
    "SSE_MAX_STREAMS": 20_000,
    "SSE_MAX_STREAMS_PER_USER": None,  # per process; None: no per-user limit
    "SSE_MAX_LIFETIME": None,
    "SSE_MAX_CHANNELS": 20,
    "SSE_MAX_CHANNEL_LENGTH": 200,
    "SSE_MAX_EVENT_SIZE": 1024 * 1024,
    "SSE_CHANNEL_MANAGER": None,
    "SSE_CORS_ALLOWED_ORIGINS": (),
    "SSE_CORS_ALLOW_CREDENTIALS": False,
    "SSE_CORS_ALLOWED_HEADERS": ("last-event-id", "cache-control"),
    "SSE_PRESENCE_INTERVAL": 2.0,  # seconds between a process's presence reports
    "SSE_REDIS_SENTINELS": (),  # ["host:port", ...] of Redis Sentinel; then the URL's host is ignored
    "SSE_REDIS_SENTINEL_SERVICE": None,  # the master's name in the sentinels' config
    "SSE_REDIS_SENTINEL_PASSWORD": None,  # the sentinels' own password (requirepass), if any
    "SSE_PUBLISH_REPLICAS": 0,  # replicas that must hold an event before send_event returns
    # The old django-sse names keep working.
    "REDIS_SSEQUEUE_CONNECTION_SETTINGS": None,
    "REDIS_SSEQUEUE_CHANEL_NAME": "sse",
}


class Settings:
    """The library's settings; each attribute is read from Django settings on first access."""

    def __getattr__(self, name: str) -> Any:
        # Called only for a name not cached yet in the instance's __dict__.
        if name not in DEFAULTS:
            raise AttributeError(name)
        value = getattr(django_settings, name, DEFAULTS[name])
        self.__dict__[name] = value
        return value

    def forget(self) -> None:
        """Drop the cached values; the next access reads Django settings again."""
        self.__dict__.clear()

    def is_set(self, name: str) -> bool:
        """Return whether the project sets ``name`` itself."""
        return hasattr(django_settings, name)

    @property
    def default_channel(self) -> str:
        return self.SSE_DEFAULT_CHANNEL or self.REDIS_SSEQUEUE_CHANEL_NAME

    @property
    def redis_url(self) -> str | None:
        """Return the Redis URL, built from the old settings dict when only it is set."""
        if self.SSE_REDIS_URL:
            return self.SSE_REDIS_URL
        legacy = self.REDIS_SSEQUEUE_CONNECTION_SETTINGS
        if legacy is None:
            return None
        from .brokers.redis.url import url_from_legacy_settings

        return url_from_legacy_settings(legacy)

    @property
    def broker_name(self) -> str:
        if self.SSE_BROKER:
            return self.SSE_BROKER
        return "redis" if self.redis_url or self.SSE_REDIS_SENTINELS else "memory"

    def history_enabled(self, channel: str) -> bool:
        """Return whether events on ``channel`` are recorded for replay."""
        if not self.SSE_HISTORY:
            return False
        return not any(_matches(channel, pattern) for pattern in self.SSE_EPHEMERAL_CHANNELS)

    def latest_value(self, channel: str) -> bool:
        """Return whether a new client of ``channel`` starts with its newest event."""
        return self.history_enabled(channel) and any(
            _matches(channel, pattern) for pattern in self.SSE_LATEST_VALUE_CHANNELS
        )


def _matches(channel: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return channel == pattern


sse_settings = Settings()


def forget_cached_settings(setting: str, **kwargs: object) -> None:
    """``setting_changed`` receiver: a changed library setting is read again."""
    if setting in DEFAULTS:
        sse_settings.forget()


# Connected on import, before the app's own receivers, which read the new values.
setting_changed.connect(forget_cached_settings, dispatch_uid="django_sse.conf")
