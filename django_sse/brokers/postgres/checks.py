"""The system checks of the PostgreSQL broker's settings (``django_sse.E060``-``E063``).

``PostgresBroker.check()`` returns these; they read settings only (no
connection: ``manage.py check --deploy`` is what reaches the database).
Retention's own settings, ``SSE_HISTORY_MAXLEN`` and ``SSE_HISTORY_TTL``,
are checked with the other general settings (E005, E006), and so are its
intervals, ``SSE_POSTGRES_POLL_INTERVAL`` (E064) and ``SSE_POSTGRES_CLEANUP_INTERVAL`` (E065).
"""

from __future__ import annotations

import importlib.util

from django.core import checks

from ...conf import Settings, setting_error


def check_postgres(settings: Settings) -> list[checks.CheckMessage]:
    """Check the database alias, psycopg and the listener's options (E060-E063)."""
    from django.conf import settings as django_settings

    errors: list[checks.CheckMessage] = []
    selected = settings.raw("SSE_BROKER") == "postgres"
    alias = settings.raw("SSE_POSTGRES_DATABASE")
    databases = getattr(django_settings, "DATABASES", {})
    if not isinstance(alias, str) or (selected and alias not in databases):
        errors.append(
            setting_error("E060", "SSE_POSTGRES_DATABASE", alias, "the alias of a DATABASES entry")
        )
    elif selected and "postgresql" not in str(databases[alias].get("ENGINE", "")):
        errors.append(
            checks.Error(
                f"SSE_POSTGRES_DATABASE is {alias!r}, whose ENGINE is not PostgreSQL.",
                hint="Name a DATABASES entry with ENGINE 'django.db.backends.postgresql'.",
                id="django_sse.E061",
            )
        )
    if selected and importlib.util.find_spec("psycopg") is None:
        errors.append(
            checks.Error(
                "SSE_BROKER is 'postgres' but psycopg (version 3) is not installed.",
                hint="pip install 'django-sse[postgres]'.",
                id="django_sse.E062",
            )
        )
    options = settings.raw("SSE_POSTGRES_LISTEN_OPTIONS")
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        expected = "a dict of libpq connection keywords, e.g. {'host': 'db-primary', 'port': 5432}"
        errors.append(setting_error("E063", "SSE_POSTGRES_LISTEN_OPTIONS", options, expected))
    return errors
