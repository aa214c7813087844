"""The library's exceptions, rooted in one ``SseError``.

Misconfiguration is Django's ``ImproperlyConfigured``, never one of these.
"""

from __future__ import annotations


class SseError(Exception):
    """Base class of every django-sse error."""


class InvalidChannel(SseError, ValueError):
    """A channel name that the library refuses (empty, too long, whitespace...)."""


class EventTooLarge(SseError, ValueError):
    """An event whose encoded data exceeds ``SSE_MAX_EVENT_SIZE``."""


class BrokerUnavailable(SseError):
    """The broker (Redis) could not be reached, or did not answer in time; worth retrying."""


class PublishError(BrokerUnavailable):
    """``send_event`` could not hand the event to the broker (e.g. Redis unreachable)."""
