"""The PostgreSQL broker's own promises, against a real PostgreSQL: commit order, transactions, faults.

What every broker promises (ids, history, gaps, retention, live delivery)
is in test_history.py, which runs on this broker too.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import transaction

from django_sse import send_event
from django_sse.brokers.base import Message
from django_sse.brokers.postgres.broker import PostgresBroker
from django_sse.core.hub import Hub
from django_sse.core.mailbox import SYNC, UNSYNCED, Mailbox
from django_sse.core.positions import ZERO, parse_position
from tests.support.doc_pages import GUIDES
from tests.support.polling import eventually
from tests.support.readme_samples import Samples, track

pytestmark = pytest.mark.integration

SAMPLES = Samples(GUIDES / "postgres.rst")
postgres_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

SETTINGS = SAMPLES.find("python", "SSE_POSTGRES_DATABASE")
SHIP = SAMPLES.find("python", "def ship(order)")


@pytest.fixture
def make_broker(postgres_alias):
    """A factory of brokers on the test database; each is closed at the end."""
    made: list[PostgresBroker] = []

    def make(**kwargs) -> PostgresBroker:
        broker = PostgresBroker(postgres_alias, **{"cleanup_interval": 0.2, **kwargs})
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def use_postgres(settings, postgres_alias):
    """send_event publishes through the PostgreSQL broker of the test database."""
    settings.SSE_BROKER = "postgres"
    settings.SSE_POSTGRES_DATABASE = postgres_alias
    return postgres_alias


def _subscribe(hub: Hub, channels: list[str]) -> Mailbox:
    mailbox = Mailbox(1_000_000)
    hub.attach(mailbox, channels)
    eventually(lambda: hub.ready(channels), timeout=10, what="the subscription confirmed")
    return mailbox


def _collect(mailbox: Mailbox, until, timeout: float = 30) -> list:
    """Take items from ``mailbox`` until ``until(items)`` holds; return them all (controls too)."""
    items: list = []
    deadline = time.monotonic() + timeout
    while not until(items):
        assert time.monotonic() < deadline, f"gave up after {len(items)} items"
        time.sleep(0.01)
        items += mailbox.take()
    return items


def _messages(items: list) -> list[Message]:
    return [item for item in items if isinstance(item, Message)]


# --- commit order ---------------------------------------------------------------------


def test_transactions_committing_out_of_order_reach_every_stream_once_in_one_order(
    make_broker, use_postgres
):
    """Under load, transactions that commit in another order than they began lose nothing.

    Eight threads each run transactions that publish one to three events,
    hold the transaction open a random while (so the later ones often commit
    first), and commit, or roll back one time in five. Three hubs (three
    processes' listeners) must each receive every committed event once, no
    rolled-back one, in one and the same order, which is also history's.
    """
    hubs = [Hub(make_broker(poll_interval=0.5)) for _ in range(3)]
    mailboxes = [_subscribe(hub, ["a", "b"]) for hub in hubs]
    committed: list[str] = []
    rolled_back: list[str] = []
    commit_xids: list[int] = []  # the xid of each transaction, in the order they committed
    lock = threading.Lock()

    class Rollback(Exception):
        pass

    def writer(number: int) -> None:
        rng = random.Random(number)
        for round_number in range(40):
            datas = [f"{number}.{round_number}.{k}" for k in range(rng.randint(1, 3))]
            keep = rng.random() > 0.2
            try:
                with transaction.atomic(using=use_postgres):
                    ids = [send_event("tick", data, rng.choice("ab")) for data in datas]
                    time.sleep(rng.random() * 0.02)
                    if not keep:
                        raise Rollback
                with lock:
                    committed.extend(datas)
                    commit_xids.append(parse_position(ids[0])[0])
            except Rollback:
                with lock:
                    rolled_back.extend(datas)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    wanted = set(committed)
    received = [
        _messages(_collect(mailbox, lambda items: len(_messages(items)) >= len(wanted)))
        for mailbox in mailboxes
    ]
    time.sleep(1.0)  # anything more (a duplicate, a rolled-back event) would arrive by now
    for mailbox, messages in zip(mailboxes, received, strict=True):
        messages += _messages(mailbox.take())
    for hub in hubs:
        hub.close()

    assert commit_xids != sorted(commit_xids), "no transaction committed out of order"
    first = [(m.id, m.data) for m in received[0]]
    for messages in received:
        datas = [m.data for m in messages]
        assert len(datas) == len(set(datas)) == len(wanted)  # each once
        assert set(datas) == wanted  # every committed one, no rolled-back one
        assert [(m.id, m.data) for m in messages] == first  # one order for all
        positions = [m.position for m in messages]
        assert positions == sorted(positions)
    history = []
    for channel in "ab":
        history += make_broker().read_history(channel, ZERO, 100_000).messages
    history.sort(key=lambda m: m.position)
    assert [(m.id, m.data) for m in history] == first
    assert not set(rolled_back) & {m.data for m in history}


def test_a_transaction_open_meanwhile_holds_later_events_back_until_it_ends(
    make_broker, postgres_server
):
    """Events committed after an older writing transaction began wait for it, then arrive, older first."""
    broker = make_broker(poll_interval=0.2)
    hub = Hub(broker)
    mailbox = _subscribe(hub, ["a"])
    with postgres_server.connect() as other:
        other.execute("BEGIN")
        other.execute(
            "INSERT INTO django_sse_event (channel, event, data, history) VALUES ('a', 'tick', 'old', true)"
        )
        later = broker.publish("a", "tick", "new", True)
        time.sleep(0.5)
        assert _messages(mailbox.take()) == []  # held back, not skipped
        assert broker.read_history("a", ZERO, 10).messages == []
        other.execute("COMMIT")
    messages = _messages(_collect(mailbox, lambda items: len(_messages(items)) >= 2))
    hub.close()

    assert [m.data for m in messages] == ["old", "new"]
    assert messages[1].id == later
    assert messages[0].position < messages[1].position


# --- publishing in the transaction -------------------------------------------------------


def test_send_event_in_a_rolled_back_transaction_is_never_delivered(make_broker, use_postgres):
    """An event sent inside transaction.atomic() that rolls back reaches no stream and no history."""
    hub = Hub(make_broker())
    mailbox = _subscribe(hub, ["a"])

    with pytest.raises(ZeroDivisionError):
        with transaction.atomic(using=use_postgres):
            send_event("tick", "rolled back", "a")
            1 / 0  # noqa: B018
    with transaction.atomic(using=use_postgres):
        with pytest.raises(ZeroDivisionError), transaction.atomic(using=use_postgres):
            send_event("tick", "savepoint rolled back", "a")
            1 / 0  # noqa: B018
        kept = send_event("tick", "kept", "a")
    messages = _messages(_collect(mailbox, lambda items: len(_messages(items)) >= 1))
    time.sleep(0.5)
    messages += _messages(mailbox.take())
    hub.close()

    assert [(m.id, m.data) for m in messages] == [(kept, "kept")]
    assert [m.data for m in make_broker().read_history("a", ZERO, 10).messages] == ["kept"]


def test_send_event_in_a_committed_transaction_is_delivered_once_after_the_commit(
    make_broker, use_postgres
):
    """Inside transaction.atomic() the event waits for the commit, then arrives once with its id."""
    broker = make_broker()
    hub = Hub(broker)
    mailbox = _subscribe(hub, ["a"])
    reader = make_broker()

    with transaction.atomic(using=use_postgres):
        event_id = send_event("tick", "in the transaction", "a")
        time.sleep(0.3)
        assert _messages(mailbox.take()) == []
        assert reader.read_history("a", ZERO, 10).messages == []  # not visible before the commit
    messages = _messages(_collect(mailbox, lambda items: len(_messages(items)) >= 1))
    time.sleep(0.5)
    messages += _messages(mailbox.take())
    hub.close()

    assert [(m.id, m.data) for m in messages] == [(event_id, "in the transaction")]


def test_send_event_outside_a_transaction_commits_at_once(make_broker, use_postgres):
    """In autocommit, send_event returns once the event is committed: another connection reads it."""
    event_id = send_event("tick", "now", "a")

    [message] = make_broker().read_history("a", ZERO, 10).messages
    assert (message.id, message.data) == (event_id, "now")


# --- faults ----------------------------------------------------------------------------


def test_a_terminated_listener_reconnects_and_streams_are_told_to_catch_up(
    make_broker, postgres_server
):
    """pg_terminate_backend of the listener: the hub hears of the loss, then subscribes again."""
    broker = make_broker(poll_interval=0.2)
    hub = Hub(broker)
    mailbox = _subscribe(hub, ["a"])
    mailbox.take()
    publisher = make_broker()

    with postgres_server.connect() as admin:
        terminated = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'django-sse listener'"
        ).fetchone()[0]
    assert terminated == 1
    during = publisher.publish("a", "tick", "during", True)
    items = _collect(mailbox, lambda items: SYNC in items)
    eventually(lambda: hub.ready(["a"]), timeout=10, what="ready again")
    after = publisher.publish("a", "tick", "after", True)
    items += _collect(mailbox, lambda found: any(m.id == after for m in _messages(found)))
    hub.close()

    assert UNSYNCED in items  # the stream catches up from history, where "during" is
    assert [m.id for m in publisher.read_history("a", ZERO, 10).messages] == [during, after]


def test_an_unreachable_database_at_start_is_never_reached_and_refuses_publishing(
    django_db_blocker,
):
    """A database that does not answer: never_reached() is True and publishing raises PublishRefused."""
    from django_sse.exceptions import PublishRefused
    from tests.support.postgres_helpers import register_alias
    from tests.support.servers import free_port

    register_alias(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "sse",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
        },
        alias="sse_nowhere",
    )
    broker = PostgresBroker("sse_nowhere", timeout=1)
    hub = Hub(broker)
    try:
        assert broker.never_reached()
        assert not broker.is_connected()
        with django_db_blocker.unblock(), pytest.raises(PublishRefused):
            broker.publish("a", "tick", "x", True)
    finally:
        hub.close()


# --- control, presence, retention ----------------------------------------------------------


class _ControlRecorder(Hub):
    def __init__(self, broker) -> None:
        self.controls: list[str] = []
        super().__init__(broker)

    def on_control(self, payload: str) -> None:
        self.controls.append(payload)
        super().on_control(payload)


def test_a_control_message_reaches_the_listener_of_every_process(make_broker):
    """publish_control (channel revocation) reaches every hub, through NOTIFY."""
    hubs = [_ControlRecorder(make_broker()) for _ in range(2)]
    for hub in hubs:
        _subscribe(hub, ["a"])
    payload = '{"user": "7", "channel": "a"}'

    make_broker().publish_control(payload)

    for hub in hubs:
        eventually(lambda hub=hub: hub.controls == [payload], timeout=5, what="the control message")
        hub.close()


def test_presence_reports_expire_after_their_ttl(make_broker):
    """Each process's report replaces its previous one and vanishes once its ttl passes."""
    broker = make_broker()
    broker.write_presence("host:1", "first", 0.5)
    broker.write_presence("host:1", "second", 0.5)
    broker.write_presence("host:2", "other", 30)

    assert sorted(make_broker().read_presence()) == ["other", "second"]
    eventually(lambda: broker.read_presence() == ["other"], timeout=5, what="host:1 expired")


def test_the_cleaner_never_deletes_what_a_live_listener_has_not_read(make_broker, postgres_server):
    """Retention waits for every live listener's recorded position: trimming cannot hide an event."""
    broker = make_broker(maxlen=5, cleanup_interval=0)  # it cleans only when told to
    ids = [broker.publish("a", "tick", str(index), True) for index in range(50)]
    with postgres_server.connect() as admin:  # a listener that was seen just now and read nothing
        admin.execute(
            "INSERT INTO django_sse_listener (process, xid, id, seen) "
            "VALUES ('stalled', '1'::xid8, 0, clock_timestamp())"
        )
        broker.clean()
        kept = len(broker.read_history("a", ZERO, 100).messages)
        admin.execute("DELETE FROM django_sse_listener WHERE process = 'stalled'")
    broker.clean()

    assert kept == 50  # nothing went while a live listener had not read it
    assert broker.read_history("a", ZERO, 100).gap
    assert [m.id for m in broker.read_history("a", parse_position(ids[-6]), 100).messages] == ids[
        -5:
    ]


def test_the_cleaner_warns_once_while_the_notify_queue_is_half_full(make_broker, caplog):
    """Over half full, the NOTIFY queue is a warning, once until it drains."""
    cleaner = make_broker(cleanup_interval=0).cleaner

    with caplog.at_level("WARNING", logger="django_sse.brokers.postgres.retention"):
        for usage in (0.1, 0.6, 0.7, 0.2, 0.9):
            cleaner._watch_queue(usage)

    assert [record.getMessage()[:40] for record in caplog.records] == [
        "PostgreSQL's NOTIFY queue is 60% full: a",
        "PostgreSQL's NOTIFY queue is 90% full: a",
    ]
    assert make_broker(cleanup_interval=0).clean() == 0  # and it asks the queue every run


# --- the guide's samples -----------------------------------------------------------------


def test_the_guides_settings_select_the_postgres_broker_and_pass_its_checks():
    """docs/guides/postgres.rst's settings: the broker is PostgreSQL on "default", and no check fails."""
    from django.test import override_settings

    from django_sse.brokers import registry
    from django_sse.conf import sse_settings

    namespace: dict = {}
    exec(compile(SETTINGS.code, "<postgres.rst settings.py>", "exec"), namespace)
    overrides = {name: value for name, value in namespace.items() if name.startswith("SSE_")}
    with override_settings(DATABASES=namespace["DATABASES"], **overrides):
        assert registry.broker_class(sse_settings) is PostgresBroker
        assert PostgresBroker.check(sse_settings) == []
    assert "django_sse" in namespace["INSTALLED_APPS"]


def test_the_guides_ship_sample_publishes_only_what_commits(make_broker, use_postgres):
    """docs/guides/postgres.rst's ship(): a failed save sends nothing; a committed one, its event."""
    namespace: dict = {}
    exec(compile(SHIP.code, "<postgres.rst ship>", "exec"), namespace)

    class OnTheTestDatabase:  # the sample's transaction.atomic(), on the test's alias
        @staticmethod
        def atomic():
            return transaction.atomic(using=use_postgres)

    namespace["transaction"] = OnTheTestDatabase

    class Order:
        pk = 7
        status = "new"
        fails = True

        def save(self):
            if self.fails:
                raise RuntimeError("the database refused the order")

    order = Order()
    with pytest.raises(RuntimeError):
        namespace["ship"](order)
    order.fails = False
    namespace["ship"](order)

    messages = make_broker().read_history("orders-7", ZERO, 10).messages
    assert [(m.event, m.data) for m in messages] == [("order", '{"id":7,"status":"shipped"}')]


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/postgres.rst was read by a passing test; this test runs last."""
    SAMPLES.check(request)
