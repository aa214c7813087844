"""History reads shared by the streams of a channel (``django_sse.core.shared_reads``).

Against the real in-process broker, with the hub's tip given by the test:
what is shared must be exactly what the broker would have answered.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from django_sse.brokers.base import History
from django_sse.brokers.memory import MemoryBroker
from django_sse.core import shared_reads
from django_sse.core.positions import ZERO, Position
from django_sse.core.shared_reads import Readiness, SharedReads
from tests.support.polling import eventually


class CountingBroker(MemoryBroker):
    """The in-process broker, counting history reads."""

    def __init__(self) -> None:
        super().__init__(maxlen=1000, ttl=0)
        self.reads = 0

    def read_history(
        self, channel: str, after: Position | None, limit: int, max_bytes: int | None = None
    ) -> History:
        self.reads += 1
        return super().read_history(channel, after, limit, max_bytes)


class Stage:
    def __init__(self, events: int = 10) -> None:
        self.broker = CountingBroker()
        self.ids = [self.broker.publish("news", "e", str(n), True) for n in range(events)]
        #: The channel's tip when it became ready; ``ready`` False: not ready.
        self.tip: Position | None = self.position(-1)
        self.ready = True
        self.reads = SharedReads(
            self.broker, lambda name: Readiness(self.tip) if self.ready else None
        )

    def position(self, index: int) -> Position:
        ms, seq = self.ids[index].split("-")
        return (int(ms), int(seq))

    def read(self, after: Position, limit: int = 500, generation: int = 0) -> list[str]:
        history = self.reads.read("news", after, limit, generation)
        return [message.data for message in history.messages]

    def direct(self, after: Position, limit: int = 500) -> History:
        return MemoryBroker.read_history(self.broker, "news", after, limit)


@pytest.fixture
def stage():
    return Stage()


def test_a_thousand_streams_resuming_from_one_position_cost_one_read(stage):
    """1,000 reads after the same position: one broker read, the same messages for each."""
    results = [stage.read(stage.position(3)) for _ in range(1000)]

    assert stage.broker.reads == 1
    assert stage.reads.shared == 999
    assert all(result == [str(n) for n in range(4, 10)] for result in results)


@pytest.mark.parametrize("index", [3, 4, 7, 8, 9])
def test_a_position_inside_the_shared_read_gets_exactly_what_follows_it(stage, index):
    """After a read from event 2, a stream at event ``index`` gets what the broker would give it."""
    stage.read(stage.position(2))
    got = stage.reads.read("news", stage.position(index), 500, 0)

    expected = stage.direct(stage.position(index), 500)
    assert stage.broker.reads == 1
    assert [m.data for m in got.messages] == [m.data for m in expected.messages]
    assert (got.gap, got.more) == (expected.gap, expected.more) == (False, False)


def test_a_position_before_the_shared_read_or_unknown_to_it_is_read_alone(stage):
    """Older positions, and positions that are not events of the read, go to the broker."""
    stage.read(stage.position(5))
    older = stage.read(stage.position(2))
    forged = stage.reads.read("news", (1, 0), 500, 0)

    assert older == [str(n) for n in range(3, 10)]
    assert forged.gap is True
    assert stage.broker.reads == 3


def test_a_stream_attached_after_a_new_event_does_not_share_an_older_read(stage):
    """Its mark is past the read's tip: the read lacks an event the hub fanned out before it came."""
    stage.read(stage.position(3))
    new_id = stage.broker.publish("news", "e", "10", True)
    new_tip = tuple(int(part) for part in new_id.split("-"))

    assert (
        stage.reads.read("news", stage.position(3), 500, 0, (new_tip, 0)).messages[-1].data == "10"
    )
    assert stage.broker.reads == 2


def test_streams_attached_before_the_channel_was_ready_share_a_read_despite_new_events(stage):
    """No mark: they need history up to the tip at readiness; later events reach them live."""
    stage.read(stage.position(3))
    stage.broker.publish("news", "e", "10", True)  # reaches the hub, and those streams, live
    shared = [stage.read(stage.position(3)) for _ in range(100)]
    newer = stage.broker.publish("news", "e", "11", True)
    stage.tip = tuple(int(part) for part in newer.split("-"))  # ready again, in effect, at "11"
    late = stage.read(stage.position(3))

    assert shared == [[str(n) for n in range(4, 10)]] * 100
    assert stage.broker.reads == 2
    assert late == [str(n) for n in range(4, 12)]


def test_a_read_is_not_shared_across_a_lost_subscription_nor_while_the_channel_is_not_ready(stage):
    """Another generation (the hub reconnected) or an unready channel: the broker is asked."""
    stage.read(stage.position(3), generation=0)
    stage.read(stage.position(3), generation=1)
    stage.ready = False
    stage.read(stage.position(3), generation=1)

    assert stage.broker.reads == 3


def test_a_read_is_shared_for_max_age_at_the_most(stage, monkeypatch):
    """History can expire without an event: a read older than MAX_AGE is not shared."""
    start = 1000.0
    now = [start]  # the module's clock, moved by hand
    monkeypatch.setattr(shared_reads, "time", SimpleNamespace(monotonic=lambda: now[0]))
    stage.read(stage.position(3))
    now[0] = start + shared_reads.MAX_AGE / 2
    stage.read(stage.position(3))
    shared_while_young = stage.broker.reads
    now[0] = start + shared_reads.MAX_AGE
    stage.read(stage.position(3))

    assert (shared_while_young, stage.broker.reads) == (1, 2)


def test_pages_are_shared_and_never_loop_on_an_empty_slice():
    """With ``more``, a stream pages through: the page after the shared one is read, not an empty slice."""
    stage = Stage(events=30)
    first = stage.reads.read("news", ZERO, 10, 0)
    again = stage.reads.read("news", ZERO, 10, 0)
    at_end = stage.reads.read("news", first.messages[-1].position, 10, 0)

    assert [m.data for m in first.messages] == [str(n) for n in range(10)] and first.more
    assert again.messages == first.messages and again.more
    assert [m.data for m in at_end.messages] == [str(n) for n in range(10, 20)] and at_end.more
    assert stage.broker.reads == 2


def test_a_shorter_limit_is_cut_and_says_more(stage):
    """A stream asking fewer messages than the shared read holds gets the first ones and more=True."""
    stage.read(ZERO)
    history = stage.reads.read("news", ZERO, 4, 0)
    sliced = stage.reads.read("news", stage.position(1), 3, 0)

    assert [m.data for m in history.messages] == ["0", "1", "2", "3"] and history.more
    assert [m.data for m in sliced.messages] == ["2", "3", "4"] and sliced.more
    assert stage.broker.reads == 1


def test_a_gap_is_shared_only_with_the_same_position(stage):
    """A trimmed position's gap is the same answer for the same position; another one is read."""
    stage.broker.maxlen = 3
    stage.broker.publish("news", "e", "trim", True)  # trims to the last 3
    stage.tip = stage.broker.read_history("news", None, 0).tip
    reads = stage.broker.reads
    gap = stage.reads.read("news", stage.position(0), 500, 0)
    same = stage.reads.read("news", stage.position(0), 500, 0)
    other = stage.reads.read("news", stage.position(1), 500, 0)

    assert gap.gap and same.gap and other.gap
    assert stage.broker.reads - reads == 2


def test_forget_drops_the_channels_read(stage):
    """Once nobody reads the channel, its read is not kept."""
    stage.read(stage.position(3))
    stage.reads.forget("news")
    stage.read(stage.position(3))

    assert stage.broker.reads == 2


def test_streams_waiting_for_a_read_in_flight_share_it(monkeypatch):
    """Ten threads asking while one slow read is under way: one broker read, the same answer."""
    import threading

    waiting: list[str] = []
    wait = shared_reads._Flight.wait

    def counted_wait(flight):
        waiting.append(threading.current_thread().name)
        return wait(flight)

    monkeypatch.setattr(shared_reads._Flight, "wait", counted_wait)
    stage = Stage()
    started = threading.Event()
    release = threading.Event()
    read = stage.broker.read_history

    def slow(channel, after, limit, max_bytes=None):
        started.set()
        release.wait(5)
        return read(channel, after, limit, max_bytes)

    stage.broker.read_history = slow
    results: list = []
    first = threading.Thread(target=lambda: results.append(stage.read(stage.position(3))))
    first.start()
    started.wait(5)
    others = [
        threading.Thread(target=lambda: results.append(stage.read(stage.position(3))))
        for _ in range(10)
    ]
    for thread in others:
        thread.start()
    # All ten wait for the read in flight (not for a read made after it finished).
    eventually(lambda: len(waiting) == 10, timeout=5, interval=0.01, what="ten waiting")
    release.set()
    for thread in [first, *others]:
        thread.join(5)

    assert stage.broker.reads == 1
    assert len(waiting) == 10
    assert results == [[str(n) for n in range(4, 10)]] * 11


@pytest.mark.integration
def test_a_thousand_streams_resuming_on_one_channel_cost_a_handful_of_history_reads(
    servers, settings
):
    """1,000 streams resume from one id under gunicorn: a few read.lua calls, each stream gets its 50 missed events in order."""
    import django_sse
    from tests.support.sse import SseClient

    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    gunicorn = servers.gunicorn(
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url},
        extra_args=["--worker-connections", "3000"],
    )
    start = django_sse.send_event("n", "start", channel="storm")
    missed = [django_sse.send_event("n", str(n), channel="storm") for n in range(50)]
    with redis.client() as admin:
        before = admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    clients = []
    try:
        for _ in range(1000):
            clients.append(
                SseClient.connect(gunicorn.port, "/events/storm/", {"Last-Event-ID": start})
            )
        received = [
            [(e.data, e.last_event_id) for e in client.read_events(50, timeout=30)]
            for client in clients
        ]
        with redis.client() as admin:
            after = admin.info("commandstats")["cmdstat_evalsha"]["calls"]
    finally:
        for client in clients:
            client.close()

    reads = after - before  # read.lua: the channel's tip once, then the shared catch-ups
    print(f"1,000 resuming streams cost {reads} history reads")
    assert [client.status for client in clients] == [200] * 1000
    assert received == [[(str(n), missed[n]) for n in range(50)]] * 1000
    assert reads <= 10, reads


def test_a_stream_attached_before_a_new_event_still_shares_the_read(stage):
    """The channel's tip moved on, but a stream whose attach mark is within the read shares it."""
    stage.read(stage.position(3))
    attached_before = (stage.tip, 0)  # what the hub had fanned out when the stream attached
    new_id = stage.broker.publish("news", "e", "10", True)
    new_tip = tuple(int(part) for part in new_id.split("-"))  # the new event reached the hub
    shared = stage.reads.read("news", stage.position(3), 500, 0, attached_before)
    attached_after = stage.reads.read("news", stage.position(3), 500, 0, (new_tip, 0))
    stage.ready = False  # another generation: neither the mark nor readiness is trusted
    other_generation = stage.reads.read("news", stage.position(3), 500, 1, attached_before)

    # The shared read lacks "10", which that stream receives live: it attached before it.
    assert [m.data for m in shared.messages] == [str(n) for n in range(4, 10)]
    assert [m.data for m in attached_after.messages] == [str(n) for n in range(4, 11)]
    assert [m.data for m in other_generation.messages] == [str(n) for n in range(4, 11)]
    assert stage.broker.reads == 3


def test_the_hub_knows_a_channels_tip_at_readiness_until_the_subscription_is_lost():
    """Readiness is the tip when the channel became ready; new events do not move it; a loss clears it."""
    from django_sse.core.hub import Hub
    from django_sse.core.mailbox import Mailbox

    broker = MemoryBroker(maxlen=100, ttl=0)
    first_id = broker.publish("news", "e", "x", True)
    hub = Hub(broker)
    hub.attach(Mailbox(10), ["news"])
    at_ready = hub._readiness("news")
    broker.publish("news", "e", "y", True)
    later = hub._readiness("news")
    hub.on_disconnected()

    assert at_ready == later == Readiness(tuple(int(p) for p in first_id.split("-")))
    assert hub._readiness("news") is None


def test_the_hub_gives_a_mark_only_for_ready_channels_with_a_known_tip():
    """attach() returns (tip, generation) for a ready channel, nothing for a new one."""
    from django_sse.core.hub import Hub
    from django_sse.core.mailbox import Mailbox

    broker = MemoryBroker(maxlen=100, ttl=0)
    hub = Hub(broker)
    first = hub.attach(Mailbox(10), ["news"])  # new: subscribed now, not ready before
    event_id = broker.publish("news", "e", "x", True)
    second = hub.attach(Mailbox(10), ["news", "other"])

    assert first == {}
    assert second == {"news": (tuple(int(p) for p in event_id.split("-")), 0)}


def test_the_hub_starts_a_new_stream_at_its_mark_or_else_at_the_channels_readiness():
    """start_position(): the mark's tip in its generation; else the tip when the channel became ready."""
    from django_sse.core.hub import Hub
    from django_sse.core.mailbox import Mailbox
    from django_sse.core.positions import ZERO, parse_position

    broker = MemoryBroker(maxlen=100, ttl=0)
    hub = Hub(broker)
    hub.attach(Mailbox(10), ["news"])  # ready with an empty history
    broker.publish("news", "e", "x", True)
    mark = hub.attach(Mailbox(10), ["news"])["news"]
    newest = parse_position(broker.publish("news", "e", "y", True))  # after the second's start

    assert hub.start_position("news", mark) == mark[0] < hub.current_tip("news") == newest
    assert hub.start_position("news", None) == ZERO  # attached before it was ready: all of it
    assert hub.start_position("other", None) is None  # not a channel of the hub
    hub.on_disconnected()
    assert hub.start_position("news", mark) is None  # not ready
    hub.on_connected()
    assert hub.ready(["news"])
    assert hub.start_position("news", mark) == newest  # another subscription: its readiness


def test_streams_coming_back_from_a_few_positions_share_a_read_each(stage):
    """Clients at two different positions, alternating: one read per position, not one per client."""
    for _ in range(50):
        assert stage.read(stage.position(7)) == ["8", "9"]
        assert stage.read(stage.position(8)) == ["9"]  # inside the first read: shared too
        assert stage.read(stage.position(2)) == [str(n) for n in range(3, 10)]

    assert stage.broker.reads == 2
