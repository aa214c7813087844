"""The check that reaches out: ``manage.py check --deploy`` asks the broker whether it answers.

Tagged ``deploy``, so plain ``check``, ``runserver`` and the workers'
start-up checks (``checks.run_startup_checks``) never wait on the network.
"""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from ..exceptions import BrokerUnavailable


def check_broker_answers() -> list[checks.CheckMessage]:
    """Return ``django_sse.E054`` when the configured Redis does not answer a PING in time.

    Nothing for the in-process broker, or when the settings cannot build a
    broker (the other checks name the setting). Waits at most about
    ``SSE_PUBLISH_TIMEOUT`` twice (connecting, then the answer).
    """
    from ..core.runtime import build_broker

    try:
        broker = build_broker()
    except (ImproperlyConfigured, ImportError, ValueError, TypeError):
        return []
    if not broker.shared:
        return []
    try:
        broker.ping()
    except BrokerUnavailable as exc:
        return [
            checks.Error(
                f"The broker does not answer: {exc}",
                hint=(
                    "Start Redis, or correct SSE_REDIS_URL (None selects the in-process "
                    "broker). Until the broker is reached, streams are refused with a 503 and "
                    "send_event raises PublishRefused. Where this check runs without Redis (a "
                    "build step), silence it: SILENCED_SYSTEM_CHECKS = ['django_sse.E054']."
                ),
                id="django_sse.E054",
            )
        ]
    finally:
        broker.close()
    return []
