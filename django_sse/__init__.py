"""Server-Sent Events for Django sites, on gevent or ASGI, with Redis fan-out and replay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"
__all__ = [
    "send_event",
    "asend_event",
    "channel_permission_changed",
    "channel_presence",
    "achannel_presence",
]

if TYPE_CHECKING:
    from .presence import Presence


def send_event(
    event_name: str,
    data: Any,
    channel: str | None = None,
    *,
    history: bool | None = None,
    on_commit: bool = False,
    using: str | None = None,
) -> str | None:
    """Publish an event to every stream reading ``channel``; see ``django_sse.publish.send_event``."""
    from .publish import send_event as publish

    return publish(event_name, data, channel, history=history, on_commit=on_commit, using=using)


async def asend_event(
    event_name: str,
    data: Any,
    channel: str | None = None,
    *,
    history: bool | None = None,
    on_commit: bool = False,
    using: str | None = None,
) -> str | None:
    """Async ``send_event`` (same checks and errors); see ``django_sse.publish.asend_event``."""
    from .publish import asend_event as publish

    return await publish(
        event_name, data, channel, history=history, on_commit=on_commit, using=using
    )


def channel_permission_changed(user: Any, channel: str) -> None:
    """Close the streams of ``user`` that may no longer read ``channel``, on every worker."""
    from .permissions import channel_permission_changed as announce

    announce(user, channel)


def channel_presence(channel: str) -> Presence:
    """Return how many streams read ``channel`` on every process, and whose; see ``django_sse.presence``."""
    from .presence import channel_presence as presence

    return presence(channel)


async def achannel_presence(channel: str) -> Presence:
    """Async version of ``channel_presence``."""
    from .presence import achannel_presence as presence

    return await presence(channel)
