"""The library's exceptions, rooted in one ``SseError``."""

from __future__ import annotations


class SseError(Exception):
    """Base class of every django-sse error."""


class InvalidChannel(SseError, ValueError):
    """A channel name that the library refuses (empty, too long, whitespace...)."""


class EventTooLarge(SseError, ValueError):
    """An event whose encoded data exceeds ``SSE_MAX_EVENT_SIZE``."""


class PublishError(SseError):
    """``send_event`` could not hand the event to the broker (e.g. Redis unreachable)."""


class BrokerNotShared(SseError):
    """The configured broker cannot reach streams in other processes."""
