"""The system checks of GRIP mode's settings (``django_sse.E055``-``E058``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core import checks

from ..brokers import registry
from ..brokers.base import Broker
from ..conf import setting_error, sse_settings


def check_grip() -> list[checks.CheckMessage]:
    """Check ``SSE_GRIP_URL`` (E055), ``SSE_GRIP_PUBLISH_HEADERS`` (E056), and the broker (E058).

    ``SSE_GRIP_RECOVERY_INTERVAL`` is one of the numbers (E057).
    """
    messages: list[checks.CheckMessage] = []
    url = sse_settings.raw("SSE_GRIP_URL")
    if url is not None and not _http_url(url):
        messages.append(
            setting_error(
                "E055",
                "SSE_GRIP_URL",
                url,
                "the proxy's control API, e.g. 'http://localhost:5561' (Pushpin), or None",
            )
        )
    headers = sse_settings.raw("SSE_GRIP_PUBLISH_HEADERS")
    if not isinstance(headers, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        messages.append(
            setting_error(
                "E056",
                "SSE_GRIP_PUBLISH_HEADERS",
                headers,
                "a dict of header names to values, e.g. {'Authorization': 'Bearer ...'}, or {}",
            )
        )
    if url is not None and not messages:
        try:
            broker_class = registry.broker_class(sse_settings)
        except Exception:  # an unknown SSE_BROKER: E020 names it
            return messages
        if broker_class.publish_in_sequence is Broker.publish_in_sequence:
            messages.append(
                checks.Error(
                    f"SSE_GRIP_URL is set, but the {sse_settings.broker_name!r} broker cannot "
                    "tell the id before each event, which GRIP mode publishes as its prev-id.",
                    hint="Use the redis or memory broker with GRIP mode, or set SSE_GRIP_URL to None.",
                    id="django_sse.E058",
                )
            )
    return messages


def _http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query
