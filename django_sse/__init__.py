"""Server-Sent Events for plain WSGI Django sites, on gevent, with Redis fan-out and replay."""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"
__all__ = ["send_event", "channel_permission_changed"]


def send_event(
    event_name: str, data: Any, channel: str | None = None, *, history: bool | None = None
) -> str | None:
    """Publish an event to every stream reading ``channel``; see ``django_sse.publish.send_event``."""
    from .publish import send_event as publish

    return publish(event_name, data, channel, history=history)


def channel_permission_changed(user: Any, channel: str) -> None:
    """Close the streams of ``user`` that may no longer read ``channel``, on every worker."""
    from .permissions import channel_permission_changed as announce

    announce(user, channel)
