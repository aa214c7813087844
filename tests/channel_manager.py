"""The test project's channel manager: the README's per-user notification channel, worked out.

Servers use it when started with ``DJANGO_SSE_TEST_SETTINGS='{"SSE_CHANNEL_MANAGER":
"tests.channel_manager.UserChannels"}'`` (see test_access.py).
"""

from __future__ import annotations

from django_sse.permissions import ChannelManager


class UserChannels(ChannelManager):
    """``user-<id>`` is readable by that user alone; ``group-<name>`` by the group's members.

    A view whose URL names the channel ``me`` streams the requesting user's
    own ``user-<id>`` channel (anonymous visitors get ``user-anonymous``,
    which nobody may read). Other channels are public.
    """

    def get_channels_for_request(self, request, view_kwargs):
        if view_kwargs.get("channel") != "me":
            return None
        user = request.user
        return [f"user-{user.pk}" if user.is_authenticated else "user-anonymous"]

    def can_read_channel(self, user, channel):
        authenticated = user is not None and user.is_authenticated
        if channel.startswith("user-"):
            return authenticated and channel == f"user-{user.pk}"
        if channel.startswith("group-"):
            # Asked again, against the database, when channel_permission_changed() is called.
            return authenticated and user.groups.filter(name=channel[len("group-") :]).exists()
        return True


class RevokedInFile(ChannelManager):
    """Every channel is readable but those listed, one a line, in ``$DJANGO_SSE_TEST_REVOKED_FILE``.

    A test revokes a channel by writing the file, then calls
    ``channel_permission_changed`` (test_redis_cluster.py).
    """

    def can_read_channel(self, user, channel):
        import os
        from pathlib import Path

        path = Path(os.environ["DJANGO_SSE_TEST_REVOKED_FILE"])
        revoked = path.read_text().split() if path.exists() else []
        return channel not in revoked
