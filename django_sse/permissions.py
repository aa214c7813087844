"""Project-wide channel access: the channel manager named by ``SSE_CHANNEL_MANAGER``."""

from __future__ import annotations

import copy
import functools
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import sse_settings
from .core.channels import validate_channel
from .core.control import PermissionChanged, encode_control
from .core.runtime import get_broker
from .grip import publisher as grip_publisher


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

        ``user`` is ``request.user``, already resolved (on a recheck, resolved
        again from the session: see ``current_request()``). It may be overridden
        as ``async def`` (run through asgiref's ``async_to_sync``, as the
        view's ``can_read_channel``).
        """
        return True


def user_key(user: Any) -> str | None:
    """Return the key that identifies ``user`` (or a primary key) across processes."""
    if user is None or getattr(user, "is_anonymous", False):
        return None
    return str(getattr(user, "pk", user))


def current_request(request: HttpRequest) -> HttpRequest:
    """Return ``request`` with its session and user loaded again, as a new request would have them.

    A permission recheck asks with this rather than with the stream's own
    request, whose ``user`` was loaded when the stream opened. As Django's
    ``SessionMiddleware`` and ``AuthenticationMiddleware`` would for a new
    request from the same client: the session is read again from its store
    (by its key) and the user resolved from it by ``django.contrib.auth.get_user``,
    a fresh instance from the database. A logged-out (deleted or flushed)
    session, a password changed since the login (the session's hash) or a
    user the backend refuses (``is_active=False`` with ``ModelBackend``)
    gives ``AnonymousUser``. The stream's request is left untouched: the
    result is a shallow copy with its own ``session``, ``user`` and ``auser()``.

    Pitfall: a user that did not come from the session (no sessions or no
    ``django.contrib.auth``, a token scheme that sets ``request.user``
    itself) cannot be resolved again here; the request is returned as it
    is, and the hooks see the user as it was loaded at the opening.
    """
    session = getattr(request, "session", None)
    key = user_key(getattr(request, "user", None))
    if session is None or key is None:
        return request
    from django.contrib.auth import SESSION_KEY, get_user

    if str(session.get(SESSION_KEY)) != key:
        return request  # the user came from elsewhere (e.g. a token)
    fresh = copy.copy(request)
    fresh.session = type(session)(session.session_key)
    user = get_user(fresh)

    async def auser() -> Any:
        return user

    # As the middleware leaves them (``_cached_user`` is what its lazy ``user`` reads).
    fresh.user = fresh._cached_user = fresh._acached_user = user  # type: ignore[attr-defined]
    fresh.auser = auser
    return fresh


def channel_permission_changed(user: Any, channel: str) -> None:
    """Re-check, on every worker and host, the streams of ``user`` that read ``channel``.

    Call it after revoking access (e.g. removing a user from a group,
    clearing ``is_staff``, deactivating the user, logging them out): each
    such stream asks its view's ``can_read_channel`` (and the channel
    manager) again, for the user as a new request would load them now
    (see ``current_request()``), and ends at once when refused. ``user`` is
    a user object or its primary key.

    In GRIP mode (``SSE_GRIP_URL``) the proxy ends every GRIP stream of
    the user (a proxy cannot ask the view); each client opens its stream
    anew and is checked as a new stream: refused with a 403, or resumed
    after its ``Last-Event-ID`` with nothing lost.
    """
    validate_channel(channel)
    key = user_key(user)
    if key is None:
        raise ValueError(
            "channel_permission_changed() needs an authenticated user or a primary key."
        )
    get_broker().publish_control(encode_control(PermissionChanged(key, channel)))
    if sse_settings.SSE_GRIP_URL is not None:
        grip_publisher.close_user_streams(key)


@functools.lru_cache(maxsize=8)
def _load(path: str) -> ChannelManager:
    return import_string(path)()


def get_channel_manager() -> ChannelManager | None:
    """Return the configured channel manager, or None when there is none."""
    path = sse_settings.SSE_CHANNEL_MANAGER
    return _load(path) if path else None
