"""``send_event``: publish one event from any process that can reach the broker."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import metrics
from .conf import sse_settings
from .core.channels import validate_channel
from .core.concurrency import offload
from .core.runtime import get_broker
from .exceptions import EventTooLarge, PublishError
from .grip import publisher as grip_publisher
from .sse import encode_data, validate_event_name

logger = logging.getLogger(__name__)


def send_event(
    event_name: str,
    data: Any,
    channel: str | None = None,
    *,
    history: bool | None = None,
    on_commit: bool = False,
    using: str | None = None,
) -> str | None:
    """Publish an event to every stream reading ``channel``; return its id.

    ``data``: a ``str`` is sent as is, anything else is JSON-encoded with
    ``DjangoJSONEncoder``. ``channel`` defaults to ``SSE_DEFAULT_CHANNEL``.
    ``history`` (default: ``SSE_HISTORY`` unless the channel is listed in
    ``SSE_EPHEMERAL_CHANNELS``) records the event so reconnecting clients get
    it; events without history have no id and None is returned.

    Everything is checked before anything is published: a bad name or channel
    raises ``ValueError``, data that cannot be encoded ``TypeError``, data
    over ``SSE_MAX_EVENT_SIZE`` ``EventTooLarge``. A broker failure raises a
    ``PublishError`` that says whether the event went out:
    ``PublishRefused`` when nothing was published (Redis unreachable, no
    connection within ``SSE_PUBLISH_TIMEOUT``, a refusal): safe to retry;
    ``PublishOutcomeUnknown`` when the event was sent but no answer came
    within ``SSE_PUBLISH_TIMEOUT`` (a hung Redis may still run it): it may be
    delivered, and a plain retry may deliver it twice (see that exception for
    how to retry without duplicates).

    With ``SSE_GRIP_URL`` set the event then goes to the GRIP proxy too; a
    proxy that does not take it is logged, not raised (the event is in the
    broker's history, and the proxy asks for it: see ``django_sse.grip``).

    ``on_commit``: publish once the transaction of database ``using`` (the
    default database when None) commits (``transaction.on_commit``), and
    never if it rolls back; None is returned, the id being unknown yet.
    Outside a transaction it publishes at once. Pitfall: the event may still
    be lost between the commit and the publish (the process dies, the broker
    fails: the ``PublishError`` is then logged, since the transaction is
    committed). The PostgreSQL broker needs none of this: there ``send_event``
    inside ``transaction.atomic()`` writes in the transaction itself.
    """
    channel, text, history = _prepare(event_name, data, channel, history)
    if on_commit:
        _publish_on_commit(channel, event_name, text, history, using)
        return None
    return _publish(channel, event_name, text, history)


async def asend_event(
    event_name: str,
    data: Any,
    channel: str | None = None,
    *,
    history: bool | None = None,
    on_commit: bool = False,
    using: str | None = None,
) -> str | None:
    """Async ``send_event``: the same checks and errors, without blocking the event loop.

    Everything is checked on the loop, before anything is published; the
    broker is then called on the runtime's executor (``core.concurrency.offload``:
    a few threads shared by every call), not a thread per call. Pitfall:
    cancelling the await does not stop a publish under way; the await
    returns once the broker has answered, then raises ``CancelledError``,
    and the event may be published all the same. ``on_commit`` and ``using``
    as ``send_event``'s: registered on the executor's thread, where no
    transaction is open, the publish then happens at once.
    """
    channel, text, history = _prepare(event_name, data, channel, history)
    if on_commit:
        await offload(_publish_on_commit, channel, event_name, text, history, using)
        return None
    event_id: str | None = await offload(_publish, channel, event_name, text, history)
    return event_id


def _prepare(
    event_name: str, data: Any, channel: str | None, history: bool | None
) -> tuple[str, str, bool]:
    """Check an event and encode its data; return its channel, data and whether it has history."""
    if channel is None:
        channel = sse_settings.default_channel
    validate_channel(channel)
    if not isinstance(event_name, str) or not event_name:
        raise ValueError(f"The event name must be a non-empty str, not {event_name!r}.")
    validate_event_name(event_name)
    if not event_name.isascii():
        event_name.encode("utf-8")  # lone surrogates raise here, before publishing
    text = encode_data(data)
    size = len(text.encode("utf-8"))
    limit = sse_settings.SSE_MAX_EVENT_SIZE
    if limit is not None and size > limit:
        raise EventTooLarge(f"The event data is {size} bytes; SSE_MAX_EVENT_SIZE allows {limit}.")
    if history is None:
        history = sse_settings.history_enabled(channel)
    return channel, text, bool(history)


def _publish_on_commit(
    channel: str, event_name: str, text: str, history: bool, using: str | None
) -> None:
    """Publish once the transaction of ``using`` commits; a failure then is logged, not raised."""
    from django.db import transaction

    def publish() -> None:
        try:
            _publish(channel, event_name, text, history)
        except PublishError as exc:
            logger.error(
                "Could not publish %r to channel %r after the commit: %s", event_name, channel, exc
            )

    transaction.on_commit(publish, using=using)


def _publish(channel: str, event_name: str, text: str, history: bool) -> str | None:
    started = time.perf_counter()
    try:
        if sse_settings.SSE_GRIP_URL is not None:
            # The broker first (history, other processes), then the GRIP proxy.
            event_id = grip_publisher.publish(get_broker(), channel, event_name, text, history)
        else:
            event_id = get_broker().publish(channel, event_name, text, history)
    except PublishError:
        metrics.record_publish(time.perf_counter() - started, failed=True)
        raise
    metrics.record_publish(time.perf_counter() - started, failed=False)
    return event_id
