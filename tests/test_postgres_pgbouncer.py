"""The PostgreSQL broker behind a real PgBouncer in transaction pooling.

LISTEN does not work through a pooler in transaction mode (the session that
listens is not the client's for long), so the listener gets its own direct
connection (``SSE_POSTGRES_LISTEN_OPTIONS``); publishing, history reads,
presence and retention go through the pooler.
"""

from __future__ import annotations

import pytest
from django.db import connections

import django_sse
from django_sse.core.positions import ZERO
from django_sse.core.runtime import get_broker
from tests.support.postgres_helpers import ALIAS, PgBouncerServer, register_alias, site_settings
from tests.support.redis_helpers import connect, data_of, open_live

pytestmark = pytest.mark.integration


@pytest.fixture
def pgbouncer(postgres_server, postgres_alias, settings):
    """A PgBouncer (transaction pooling) in front of the session's cluster; the alias goes through it."""
    bouncer = PgBouncerServer(postgres_server)
    bouncer.start()
    connections[ALIAS].close()
    register_alias(bouncer.database_settings())
    settings.SSE_BROKER = "postgres"
    settings.SSE_POSTGRES_DATABASE = ALIAS
    settings.SSE_POSTGRES_LISTEN_OPTIONS = {"port": str(postgres_server.port)}
    settings.SSE_POSTGRES_CLEANUP_INTERVAL = 0.1
    yield bouncer
    connections[ALIAS].close()
    get_broker().close()
    register_alias(postgres_server.database_settings())
    bouncer.stop()
    bouncer.remove()


def test_publishing_history_and_live_events_work_through_pgbouncer_with_a_direct_listener(
    servers, postgres_server, pgbouncer, settings
):
    """Streams on a server whose database is PgBouncer get live events and replay; the listener goes direct."""
    # Polls far apart: events that arrive at once were announced by NOTIFY, which reaches
    # only a listener connected straight to PostgreSQL.
    project = site_settings(
        postgres_server,
        SSE_POSTGRES_LISTEN_OPTIONS={"port": str(postgres_server.port)},
        SSE_POSTGRES_POLL_INTERVAL=30,
    )
    project["DATABASES"][ALIAS] = pgbouncer.database_settings()
    site = servers.site("", heartbeat="0.5", settings=project, workers=2)
    client = open_live(site.port, "/events/pooled/")
    assert connections[ALIAS].settings_dict["PORT"] == str(pgbouncer.port)

    ids = [django_sse.send_event("tick", str(index), channel="pooled") for index in range(20)]
    live = data_of(client, 20, timeout=5)
    client.close()
    resumed = connect(site.port, "/events/pooled/", ids[9])
    replayed = data_of(resumed, 10)
    resumed.close()
    presence = get_broker().read_presence()
    history = get_broker().read_history("pooled", ZERO, 100)

    assert live == [str(index) for index in range(20)]
    assert replayed == [str(index) for index in range(10, 20)]
    assert [m.id for m in history.messages] == ids
    assert isinstance(presence, list)
