"""Library settings, read lazily from ``django.conf.settings`` with defaults.

Each setting is a typed attribute of ``sse_settings`` (``sse_settings.SSE_QUEUE_SIZE``
is an ``int`` to mypy). A value is read from Django settings on first use
and then kept in the instance: a stream reads several settings as it opens,
and Django's lazy settings cost a lookup each time, while a kept value costs
a plain attribute read. Django sends ``setting_changed`` when a test
overrides a setting (``override_settings``, pytest-django's ``settings``),
and this module drops its kept values then, so overrides work as usual.
Pitfall: assigning to ``django.conf.settings`` at run time, which Django
does not support anyway, is not seen. The types are what the settings
reference promises, not what a project may have written: validation lives
in ``django_sse.checks``, which reads the raw values (``Settings.raw()``)
and fails the system checks at start-up with a message naming the setting.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Generic, TypeVar, overload
from urllib.parse import quote

from django.conf import settings as django_settings
from django.core import checks
from django.core.signals import setting_changed

T = TypeVar("T")

DEFAULTS: dict[str, Any] = {
    "SSE_BROKER": None,  # "memory", "redis" or "postgres"; None: redis when a Redis URL is set
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
    "SSE_TUNE_GC": True,  # gevent workers freeze the heap and raise the GC thresholds once loaded
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
    "SSE_GRIP_URL": None,  # a GRIP proxy's control API (Pushpin: "http://localhost:5561"): GRIP mode
    "SSE_GRIP_PUBLISH_HEADERS": {},  # headers of each publish to it (Fastly Fanout: its key)
    "SSE_GRIP_RECOVERY_INTERVAL": 300.0,  # the proxy asks each stream's view at least this often
    "SSE_POSTGRES_DATABASE": "default",  # the DATABASES alias of the PostgreSQL broker
    "SSE_POSTGRES_LISTEN_OPTIONS": {},  # libpq keywords over the alias's, for the listener alone
    "SSE_POSTGRES_POLL_INTERVAL": 1.0,  # seconds between reads that no notification asked for
    "SSE_POSTGRES_CLEANUP_INTERVAL": 10.0,  # seconds between each process's retention runs
    # The old django-sse names keep working.
    "REDIS_SSEQUEUE_CONNECTION_SETTINGS": None,
    "REDIS_SSEQUEUE_CHANEL_NAME": "sse",
}


class Setting(Generic[T]):
    """A typed, lazily read setting: ``SSE_QUEUE_SIZE = Setting[int]()`` in ``Settings``.

    The first read takes the value from Django settings (or ``DEFAULTS``) and
    keeps it in the instance's ``__dict__``, which Python looks in before
    this descriptor (it has no ``__set__``): later reads are plain attribute
    reads, as fast as a constant. ``Settings.forget()`` empties that dict.
    Pitfall: the name must be a key of ``DEFAULTS``, or the first read fails
    with ``KeyError``.
    """

    name = ""

    def __set_name__(self, owner: type[Settings], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Settings]) -> Setting[T]: ...

    @overload
    def __get__(self, instance: Settings, owner: type[Settings]) -> T: ...

    def __get__(self, instance: Settings | None, owner: type[Settings]) -> Setting[T] | T:
        if instance is None:
            return self
        value: T = instance.raw(self.name)
        instance.__dict__[self.name] = value
        return value


class Settings:
    """The library's settings; each attribute is read from Django settings on first access."""

    SSE_BROKER = Setting[str | None]()
    SSE_REDIS_URL = Setting[str | None]()
    SSE_REDIS_PREFIX = Setting[str]()
    SSE_REDIS_CLUSTER = Setting[bool]()
    SSE_DEFAULT_CHANNEL = Setting[str | None]()
    SSE_HEARTBEAT_INTERVAL = Setting[float]()
    SSE_RETRY = Setting[int | None]()
    SSE_RETRY_JITTER = Setting[float]()
    SSE_PUBLISH_TIMEOUT = Setting[float]()
    SSE_QUEUE_SIZE = Setting[int]()
    SSE_STREAM_BUFFER_BYTES = Setting[int]()
    SSE_HISTORY = Setting[bool]()
    SSE_EPHEMERAL_CHANNELS = Setting[Collection[str]]()
    SSE_LATEST_VALUE_CHANNELS = Setting[Collection[str]]()
    SSE_HISTORY_MAXLEN = Setting[int]()
    SSE_HISTORY_TTL = Setting[float]()
    SSE_RESET_EVENT = Setting[str]()
    SSE_METRICS = Setting[bool]()
    SSE_TUNE_GC = Setting[bool]()
    SSE_MAX_STREAMS = Setting[int | None]()
    SSE_MAX_STREAMS_PER_USER = Setting[int | None]()
    SSE_MAX_LIFETIME = Setting[float | None]()
    SSE_MAX_CHANNELS = Setting[int]()
    SSE_MAX_CHANNEL_LENGTH = Setting[int]()
    SSE_MAX_EVENT_SIZE = Setting[int | None]()
    SSE_CHANNEL_MANAGER = Setting[str | None]()  # a dotted path
    SSE_CORS_ALLOWED_ORIGINS = Setting[Sequence[str]]()
    SSE_CORS_ALLOW_CREDENTIALS = Setting[bool]()
    SSE_CORS_ALLOWED_HEADERS = Setting[Sequence[str]]()
    SSE_PRESENCE_INTERVAL = Setting[float]()
    SSE_REDIS_SENTINELS = Setting[Sequence[str]]()  # "host:port" entries
    SSE_REDIS_SENTINEL_SERVICE = Setting[str | None]()
    SSE_REDIS_SENTINEL_PASSWORD = Setting[str | None]()
    SSE_PUBLISH_REPLICAS = Setting[int]()
    SSE_GRIP_URL = Setting[str | None]()
    SSE_GRIP_PUBLISH_HEADERS = Setting[dict[str, str]]()
    SSE_GRIP_RECOVERY_INTERVAL = Setting[float]()
    SSE_POSTGRES_DATABASE = Setting[str]()
    SSE_POSTGRES_LISTEN_OPTIONS = Setting[dict[str, Any]]()
    SSE_POSTGRES_POLL_INTERVAL = Setting[float]()
    SSE_POSTGRES_CLEANUP_INTERVAL = Setting[float]()
    REDIS_SSEQUEUE_CONNECTION_SETTINGS = Setting[dict[str, Any] | None]()
    REDIS_SSEQUEUE_CHANEL_NAME = Setting[str]()

    def raw(self, name: str) -> Any:
        """Return setting ``name`` as the project wrote it, or its default; nothing is kept.

        For the system checks, which validate values of any type; the rest
        of the library reads the typed attributes.
        """
        return getattr(django_settings, name, DEFAULTS[name])

    def forget(self) -> None:
        """Drop the kept values; the next access reads Django settings again."""
        self.__dict__.clear()

    def is_set(self, name: str) -> bool:
        """Return whether the project sets ``name`` itself."""
        return hasattr(django_settings, name)

    @property
    def default_channel(self) -> str:
        """Return ``SSE_DEFAULT_CHANNEL``, or the old ``REDIS_SSEQUEUE_CHANEL_NAME`` when it is None."""
        return self.SSE_DEFAULT_CHANNEL or self.REDIS_SSEQUEUE_CHANEL_NAME

    @property
    def redis_url(self) -> str | None:
        """Return the Redis URL, built from the old settings dict when only it is set."""
        if self.SSE_REDIS_URL:
            return self.SSE_REDIS_URL
        legacy = self.REDIS_SSEQUEUE_CONNECTION_SETTINGS
        if legacy is None:
            return None
        return url_from_legacy_settings(legacy)

    @property
    def broker_name(self) -> str:
        """Return ``SSE_BROKER``, or the broker it defaults to: redis when Redis is configured, else memory."""
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


def url_from_legacy_settings(legacy: dict[str, Any]) -> str:
    """Return a Redis URL for ``REDIS_SSEQUEUE_CONNECTION_SETTINGS`` (location, db, password)."""
    location = str(legacy.get("location", "localhost:6379"))
    db = int(legacy.get("db", 0) or 0)
    password = legacy.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    if location.startswith("unix:"):
        return f"unix://{auth}{location[len('unix:') :]}?db={db}"
    return f"redis://{auth}{location}/{db}"


def setting_error(id_: str, setting: str, value: Any, expected: str) -> checks.Error:
    """Return the system-check error ``django_sse.<id_>``: ``setting`` holds ``value``, expected ``expected``."""
    return checks.Error(
        f"{setting} is {value!r}, which is not valid.",
        hint=f"Set {setting} to {expected}.",
        id=f"django_sse.{id_}",
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
