"""The control message every hub receives: written by ``channel_permission_changed``, read by the hub.

Wire format (JSON text on the broker's control channel):
``{"user": "<primary key>", "channel": "<channel>"}``: the streams of that
user on that channel ask their view again whether they may go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class PermissionChanged:
    """``user`` (a primary key, as text) may have lost access to ``channel``."""

    user: str
    channel: str


def encode_control(change: PermissionChanged) -> str:
    """Return the payload to publish on the control channel."""
    return json.dumps({"user": change.user, "channel": change.channel})


def decode_control(payload: str) -> PermissionChanged | None:
    """Return the change ``payload`` announces, or None when it is not one (malformed)."""
    try:
        command = json.loads(payload)
        user, channel = command["user"], command["channel"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(channel, str) or isinstance(user, (dict, list)):
        return None
    return PermissionChanged(str(user), channel)
