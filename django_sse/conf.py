"""Library settings, read lazily from ``django.conf.settings`` with defaults.

Every property reads the current Django settings, so ``override_settings``
works in tests. Validation lives in ``checks.py``: a wrong value fails the
system checks at start-up with a message naming the setting.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

DEFAULTS: dict[str, Any] = {
    "SSE_BROKER": None,  # "memory" or "redis"; None: redis when a Redis URL is set
    "SSE_REDIS_URL": None,
    "SSE_REDIS_PREFIX": "sse:",
    "SSE_DEFAULT_CHANNEL": None,  # falls back to the old REDIS_SSEQUEUE_CHANEL_NAME, then "sse"
    "SSE_HEARTBEAT_INTERVAL": 15.0,
    "SSE_RETRY": 2000,
    "SSE_RETRY_JITTER": 0.5,  # shutdown/lifetime hints: SSE_RETRY x (1 + up to this)
    "SSE_PUBLISH_TIMEOUT": 5.0,
    "SSE_QUEUE_SIZE": 2000,
    "SSE_HISTORY": True,
    "SSE_EPHEMERAL_CHANNELS": (),
    "SSE_HISTORY_MAXLEN": 10_000,
    "SSE_HISTORY_TTL": 24 * 3600,
    "SSE_RESET_EVENT": "stream-reset",
    "SSE_MAX_STREAMS": 20_000,
    "SSE_MAX_LIFETIME": None,
    "SSE_MAX_CHANNELS": 20,
    "SSE_MAX_CHANNEL_LENGTH": 200,
    "SSE_MAX_EVENT_SIZE": 1024 * 1024,
    "SSE_CHANNEL_MANAGER": None,
    "SSE_CORS_ALLOWED_ORIGINS": (),
    "SSE_CORS_ALLOW_CREDENTIALS": False,
    "SSE_CORS_ALLOWED_HEADERS": ("last-event-id", "cache-control"),
    # The old django-sse names keep working.
    "REDIS_SSEQUEUE_CONNECTION_SETTINGS": None,
    "REDIS_SSEQUEUE_CHANEL_NAME": "sse",
}


class Settings:
    """The library's settings; each attribute is read from Django settings on access."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        return getattr(django_settings, name, DEFAULTS[name])

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
        from .redis_url import url_from_legacy_settings

        return url_from_legacy_settings(legacy)

    @property
    def broker_name(self) -> str:
        if self.SSE_BROKER:
            return self.SSE_BROKER
        return "redis" if self.redis_url else "memory"

    def history_enabled(self, channel: str) -> bool:
        """Return whether events on ``channel`` are recorded for replay."""
        if not self.SSE_HISTORY:
            return False
        return not any(_matches(channel, pattern) for pattern in self.SSE_EPHEMERAL_CHANNELS)


def _matches(channel: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return channel == pattern


sse_settings = Settings()
