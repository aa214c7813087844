"""The GRIP headers of a hold, the signed link the proxy follows back, and its ``Grip-Last``.

A hold names every channel with a ``prev-id``: the last event id the client
got (``-`` for a channel whose events carry none, and for the user's
control channel), so that the proxy checks the order of everything it is
given and asks again (``Grip-Link`` ``rel=next``) when it finds a gap. Its
request carries ``Grip-Last: <channel>; last-id=<id>`` for each channel and
none of the client's headers (no cookie, no ``Authorization``): it is
authorized by a grant, signed with Django's signing (``SECRET_KEY``), that
names the channels the client was allowed when its stream opened, and
expires unless renewed (every answer renews it; the proxy asks at least
every ``SSE_GRIP_RECOVERY_INTERVAL``). Revoking closes the user's streams
(see ``publisher``), which then open anew and are checked as any new stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.core import signing
from django.utils.encoding import escape_uri_path
from django.utils.http import parse_header_parameters

#: The prev-id of a proxy channel whose events carry no id.
NO_ID = "-"
#: The query parameter of the link the proxy follows: the grant.
GRANT_PARAMETER = "sse-grip"
_SALT = "django_sse.grip.grant"


@dataclass(frozen=True)
class Grant:
    """What a stream's client was allowed when it opened: its channels, and who it is."""

    channels: tuple[str, ...]
    user_key: str | None


def sign_grant(grant: Grant) -> str:
    """Return ``grant`` signed for the link the proxy follows."""
    return signing.dumps(
        {"c": list(grant.channels), "u": grant.user_key}, salt=_SALT, compress=True
    )


def read_grant(token: str, max_age: float) -> Grant | None:
    """Return the grant ``token`` carries, or None when it is forged, altered, malformed or older than ``max_age``."""
    try:
        value = signing.loads(token, salt=_SALT, max_age=timedelta(seconds=max_age))
    except signing.BadSignature:  # SignatureExpired is one
        return None
    if not isinstance(value, dict):
        return None
    channels, user_key = value.get("c"), value.get("u")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        return None
    if user_key is not None and not isinstance(user_key, str):
        return None
    return Grant(tuple(channels), user_key)


def next_link(path: str, grant: Grant, last_event_id: str | None) -> str:
    """Return the URL (relative to the site) the proxy asks for what follows: the same view."""
    query = {GRANT_PARAMETER: sign_grant(grant)}
    if last_event_id:
        query["lastEventId"] = last_event_id
    return f"{escape_uri_path(path)}?{urlencode(query)}"


def hold_headers(
    prev_ids: dict[str, str],
    link: str,
    recovery_interval: int,
    keep_alive: bytes,
    keep_alive_interval: int,
) -> dict[str, str]:
    """Return the headers that hand the stream to the proxy.

    ``prev_ids``: each proxy channel and the last id the client has of it.
    ``keep_alive``: what the proxy writes after ``keep_alive_interval``
    seconds of silence (the library's heartbeat comment).
    """
    escaped = keep_alive.decode("ascii").replace("\\", "\\\\").replace("\n", "\\n")
    return {
        "Grip-Hold": "stream",
        "Grip-Channel": ", ".join(f"{name}; prev-id={prev}" for name, prev in prev_ids.items()),
        "Grip-Link": f"<{link}>; rel=next; timeout={recovery_interval}",
        "Grip-Keep-Alive": f"{escaped}; format=cstring; timeout={keep_alive_interval}",
    }


def parse_grip_last(value: str) -> dict[str, str] | None:
    """Return each channel's last id from a ``Grip-Last`` header (several joined with ``,``).

    None when it is malformed. Channel names and ids never hold a comma
    (``names``, ``core.positions``), so entries split on it; Django's
    ``parse_header_parameters`` reads each ``<channel>; last-id=<id>``.
    """
    last_ids: dict[str, str] = {}
    for entry in value.split(","):
        name, params = parse_header_parameters(entry.strip())
        last_id = params.get("last-id")
        if not name or not last_id:
            return None
        last_ids[name] = last_id
    return last_ids
