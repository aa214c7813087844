"""Project-wide channel access: the channel manager named by ``SSE_CHANNEL_MANAGER``."""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from .channels import validate_channel
from .conf import sse_settings
from .control import PermissionChanged, encode_control
from .runtime import get_broker


class ChannelManager:
    """Say, in one place, which channels a request streams and who may read them.

    Subclass it and name the subclass in ``SSE_CHANNEL_MANAGER``. Every
    ``RedisQueueView`` asks it (besides the view's own ``can_read_channel``).
    """

    def get_channels_for_request(
        self, request: HttpRequest, view_kwargs: dict[str, Any]
    ) -> list[str] | None:
        """Return the channels to stream, or None to let the view decide (the default)."""
        return None

    def can_read_channel(self, user: Any, channel: str) -> bool:
        """Return whether ``user`` (possibly anonymous) may read ``channel``; default: yes.

        ``user`` is ``request.user``, already resolved. It may be overridden
        as ``async def`` (run through asgiref's ``async_to_sync``, as the
        view's ``can_read_channel``).
        """
        return True


def user_key(user: Any) -> str | None:
    """Return the key that identifies ``user`` (or a primary key) across processes."""
    if user is None or getattr(user, "is_anonymous", False):
        return None
    return str(getattr(user, "pk", user))


def channel_permission_changed(user: Any, channel: str) -> None:
    """Re-check, on every worker and host, the streams of ``user`` that read ``channel``.

    Call it after revoking access (e.g. removing a user from a group): each
    such stream asks its view's ``can_read_channel`` (and the channel
    manager) again and ends at once when refused. ``user`` is a user object
    or its primary key.
    """
    validate_channel(channel)
    key = user_key(user)
    if key is None:
        raise ValueError(
            "channel_permission_changed() needs an authenticated user or a primary key."
        )
    get_broker().publish_control(encode_control(PermissionChanged(key, channel)))


@functools.lru_cache(maxsize=8)
def _load(path: str) -> ChannelManager:
    return import_string(path)()


def get_channel_manager() -> ChannelManager | None:
    """Return the configured channel manager, or None when there is none."""
    path = sse_settings.SSE_CHANNEL_MANAGER
    return _load(path) if path else None
