"""Project-wide channel access: the channel manager named by ``SSE_CHANNEL_MANAGER``."""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import sse_settings


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
        """Return whether ``user`` (possibly anonymous) may read ``channel``; default: yes."""
        return True


@functools.lru_cache(maxsize=8)
def _load(path: str) -> ChannelManager:
    return import_string(path)()


def get_channel_manager() -> ChannelManager | None:
    """Return the configured channel manager, or None when there is none."""
    path = sse_settings.SSE_CHANNEL_MANAGER
    return _load(path) if path else None
