"""The library's exceptions, rooted in one ``SseError``.

Misconfiguration is Django's ``ImproperlyConfigured``, never one of these.
"""

from __future__ import annotations

import enum


class SseError(Exception):
    """Base class of every django-sse error."""


class InvalidChannel(SseError, ValueError):
    """A channel name that the library refuses (empty, too long, whitespace...)."""


class EventTooLarge(SseError, ValueError):
    """An event whose encoded data exceeds ``SSE_MAX_EVENT_SIZE``."""


class BrokerUnavailable(SseError):
    """The broker (Redis) could not be reached, or did not answer in time; worth retrying.

    Pitfall: a publish that did not answer in time may have been published;
    ``PublishError`` says which (see ``PublishOutcomeUnknown``).
    """


class PublishOutcome(enum.Enum):
    """What a failed publish left behind: the ``outcome`` of every ``PublishError``."""

    #: Nothing was published: the broker was never sent the event, or refused it whole.
    NOT_PUBLISHED = "not published"
    #: The event may have been recorded and delivered (the answer never came, or came partly).
    UNKNOWN = "unknown"


class PublishError(BrokerUnavailable):
    """``send_event`` failed; its subclass, and ``outcome``, say whether the event went out.

    Catch ``PublishRefused`` to retry safely, ``PublishOutcomeUnknown`` to
    retry without duplicates (see there). A broker that raises a plain
    ``PublishError`` says nothing, which is taken as ``UNKNOWN``.
    """

    outcome: PublishOutcome = PublishOutcome.UNKNOWN


class PublishRefused(PublishError):
    """Nothing was published: retrying cannot duplicate the event.

    Raised before the event was sent (Redis unreachable, no connection within
    ``SSE_PUBLISH_TIMEOUT``, a Sentinel naming no master), or when Redis
    refused the command before it wrote anything (an ACL, ``READONLY``,
    ``OOM``).
    """

    outcome = PublishOutcome.NOT_PUBLISHED


class PublishOutcomeUnknown(PublishError):
    """The event was sent but its fate is unknown: it may be recorded and delivered.

    Raised when the answer did not come within ``SSE_PUBLISH_TIMEOUT`` or the
    connection was lost after the event was sent (a hung or overloaded Redis
    may still run it), when fewer replicas than ``SSE_PUBLISH_REPLICAS``
    confirmed an event the master holds, or when Redis refused a step of the
    publish after the event was recorded. A plain retry may deliver it twice.

    To retry without duplicates, give the event a key of your own in its
    data (e.g. ``"key": str(uuid.uuid4())``) and retry with the same key:
    readers drop a key they have seen; or, before retrying, look for the key
    in the channel's history (the Redis stream that docs/reference/wire-format.rst
    names, ``XREVRANGE``). Or accept the event at least once, and retry as is.
    """

    outcome = PublishOutcome.UNKNOWN
