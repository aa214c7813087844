"""PostgreSQL faults against real processes: a restart, the listener's backend ended, unreachable at start.

A gunicorn gevent worker of the test project uses the session's cluster;
events are published by ``send_event`` in this process. What each test
holds the broker to: every client receives every committed event once, in
order (replayed from history after the fault), or the server says why not.
"""

from __future__ import annotations

import http.client
import threading
import time

import pytest
from django.db import connections

import django_sse
from django_sse.exceptions import PublishError
from tests.support.postgres_helpers import ALIAS, site_settings, use_postgres
from tests.support.redis_helpers import data_of, eventually, open_live
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def site(servers, postgres_server, postgres_alias, settings):
    """A gunicorn (two gevent workers) on the PostgreSQL broker; send_event here publishes to it."""
    use_postgres(settings, postgres_alias)
    settings.SSE_PUBLISH_TIMEOUT = 1
    return servers.site("", heartbeat="0.5", settings=site_settings(postgres_server), workers=2)


class Publisher:
    """Publishes ``n`` numbered events to ``channels`` from a thread, each retried until it is committed."""

    def __init__(self, channels: list[str]) -> None:
        self.channels = channels
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                for channel in self.channels:
                    django_sse.send_event("tick", str(self.sent), channel=channel)
            except PublishError:
                # Refused or unknown: with autocommit an unknown one may have committed, so
                # the test publishes one channel at a time and never counts a failed number.
                connections[ALIAS].close()
                time.sleep(0.05)
                continue
            self.sent += 1
            time.sleep(0.005)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(30)


def _numbers(client, count: int) -> list[int]:
    return [int(data) for data in data_of(client, count, timeout=30, event="tick")]


def _assert_every_number_once_in_order(numbers: list[int]) -> None:
    """A number may repeat only where a failed publish was retried (its outcome was unknown)."""
    deduplicated = [n for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n]
    assert deduplicated == list(range(len(deduplicated))), deduplicated


def test_streams_get_every_committed_event_through_a_postgres_restart(
    site, postgres_server, django_db_blocker
):
    """PostgreSQL stopped and started under live streams: each gets every committed event, in order."""
    clients = [open_live(site.port, f"/events/restart-{n % 2}/") for n in range(6)]
    with Publisher(["restart-0"]) as publisher:
        time.sleep(0.5)
        postgres_server.stop()
        time.sleep(1.0)
        postgres_server.start()
        eventually(lambda: publisher.sent > 60, timeout=30, what="publishing resumed")
    with Publisher(["restart-1"]) as other:
        eventually(lambda: other.sent > 5, timeout=30, what="publishing")
    received = [
        _numbers(client, publisher.sent if n % 2 == 0 else other.sent)
        for n, client in enumerate(clients)
    ]
    for client in clients:
        client.close()

    for numbers in received:
        _assert_every_number_once_in_order(numbers)
    assert "Lost the LISTEN connection" in site.stderr_text(100_000)


def test_streams_get_every_event_when_the_listeners_backends_are_terminated(site, postgres_server):
    """pg_terminate_backend of every listener, three times, while events flow: nothing is lost."""
    clients = [open_live(site.port, "/events/terminated/") for _ in range(4)]
    with Publisher(["terminated"]) as publisher:
        for _ in range(3):
            time.sleep(0.4)
            with postgres_server.connect() as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'django-sse listener'"
                ).fetchone()[0]
            assert ended >= 1
        time.sleep(0.4)
    received = [_numbers(client, publisher.sent) for client in clients]
    for client in clients:
        client.close()

    for numbers in received:
        _assert_every_number_once_in_order(numbers)
        assert len(set(numbers)) == publisher.sent


def test_a_stream_waits_for_a_long_transaction_and_then_gets_everything_in_order(
    site, postgres_server
):
    """An open transaction that wrote something holds later events back; none is skipped when it ends."""
    client = open_live(site.port, "/events/long/")
    with postgres_server.connect() as other:
        other.execute("BEGIN")
        other.execute("SELECT pg_current_xact_id()")  # it has an xid: the horizon stays behind it
        for index in range(5):
            django_sse.send_event("tick", str(index), channel="long")
        with pytest.raises(TimeoutError):
            client.read_events(1, timeout=1.0)
        other.execute(
            "INSERT INTO django_sse_event (channel, event, data, history) "
            "VALUES ('long', 'tick', 'from the long transaction', true)"
        )
        other.execute("COMMIT")
    data = data_of(client, 6, timeout=10)
    client.close()

    assert data == ["from the long transaction", "0", "1", "2", "3", "4"]


def test_a_server_that_never_reached_postgres_refuses_streams_with_a_503(servers, postgres_server):
    """The database unreachable at start: a stream is refused with a 503, and the log says why."""
    dead = {**postgres_server.database_settings(), "PORT": str(free_port())}
    settings = site_settings(postgres_server)
    settings["DATABASES"][ALIAS] = dead
    server = servers.site("", heartbeat="0.5", settings=settings)

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/events/nowhere/", headers={"Accept": "text/event-stream"})
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 503
    eventually(
        lambda: "Could not reach PostgreSQL" in server.stderr_text(100_000),
        timeout=10,
        what="the never-reached warning",
    )


def test_churn_leaves_nothing_behind(site, postgres_server):
    """Streams opened and closed on many channels: the hub, the fds and the database connections come back."""
    from tests.support.redis_helpers import get_stats, stats_when

    def connections_to_postgres() -> int:
        with postgres_server.connect() as admin:
            return admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'django-sse%%'"
            ).fetchone()[0]

    def churn(cycle: int) -> None:
        clients = [open_live(site.port, f"/events/churn-{cycle}-{n % 10}/") for n in range(20)]
        django_sse.send_event("tick", "x", channel=f"churn-{cycle}-0")
        for client in clients:
            client.close()
        stats_when(site.port, lambda stats: stats["streams"] == 0)

    churn(0)  # every process opens its connections (listener, reads, cleaner)
    time.sleep(1.0)  # the cleaners' first runs
    before_connections = connections_to_postgres()
    fds_before = {get_stats(site.port)["pid"]: get_stats(site.port)["fds"] for _ in range(6)}
    for cycle in range(1, 4):
        churn(cycle)

    for _ in range(6):  # both workers
        stats = stats_when(
            site.port, lambda stats: stats["streams"] == 0 and stats["hub_channels"] == 0
        )
        if stats["pid"] in fds_before:
            assert stats["fds"] <= fds_before[stats["pid"]] + 2
    assert connections_to_postgres() == before_connections <= 3 * 3  # two workers and this process
