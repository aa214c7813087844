"""Unit tests of ``django_sse.core.cursor.ChannelCursor``: replay state and the exact bytes it owes.

The cursor runs against the real in-process broker on a clock that stands
still, so ids are predictable (``1000-0``, ``1000-1``, ...), and against a
hand-written hub with only what the cursor asks of it. Building a cursor and
catching it up goes through ``Stage`` alone, so an API change is a one-place
change.
"""

from __future__ import annotations

import pytest

from django_sse.brokers.base import History, Message
from django_sse.brokers.memory import MemoryBroker
from django_sse.core.cursor import ChannelCursor
from django_sse.core.positions import Position, channel_tag
from django_sse.exceptions import BrokerUnavailable

# --- the stage: broker, hub and cursor --------------------------------------


class StillClockBroker(MemoryBroker):
    """The in-process broker with the clock stopped at ``clock_ms``; records and can fail reads."""

    def __init__(self, maxlen: int) -> None:
        super().__init__(maxlen=maxlen, ttl=0)
        self.clock_ms = 1000
        #: Every ``read_history`` call, as ``(channel, after, limit)``.
        self.reads: list[tuple[str, Position | None, int]] = []
        #: Per channel, how many reads raise ``BrokerUnavailable`` (as when Redis is away).
        self.failing: dict[str, int] = {}

    def _next_position(self, last: Position) -> Position:
        now = self.clock_ms
        return (now, 0) if now > last[0] else (last[0], last[1] + 1)

    def read_history(
        self, channel: str, after: Position | None, limit: int, max_bytes: int | None = None
    ) -> History:
        self.reads.append((channel, after, limit))
        if self.failing.get(channel):
            self.failing[channel] -= 1
            raise BrokerUnavailable(f"Could not read the history of {channel!r}.")
        return super().read_history(channel, after, limit, max_bytes)


class FakeHub:
    """The hub as the cursor reads through it (``read_history``, ``current_tip``); collects live messages.

    Like the real hub, ``current_tip`` returns a tip it knows (``tips``) or
    reads it from the broker and remembers it (recorded in ``learned``).
    """

    def __init__(self, broker: StillClockBroker) -> None:
        self.broker = broker
        self.tips: dict[str, Position] = {}
        #: What ``start_position`` answers per channel (absent: None, "not known").
        self.starts: dict[str, Position] = {}
        #: The marks ``start_position`` was asked about.
        self.asked: list[tuple[str, object]] = []
        self.learned: list[tuple[str, Position]] = []
        self.live: list[Message] = []

    def read_history(
        self, name: str, after: Position, limit: int, mark=None, max_bytes=None
    ) -> History:
        return self.broker.read_history(name, after, limit, max_bytes)

    def start_position(self, name: str, mark=None) -> Position | None:
        self.asked.append((name, mark))
        return self.starts.get(name)

    def current_tip(self, name: str) -> Position:
        if name in self.tips:
            return self.tips[name]
        tip = self.broker.read_history(name, None, 0).tip
        self.learned.append((name, tip))
        return tip

    # What the broker calls (BrokerListener).

    def on_connected(self) -> int:
        return 0

    def on_subscribed(self, name: str) -> None:
        pass

    def on_message(self, message: Message) -> None:
        self.live.append(message)


class Stage:
    """A broker and hub, and the one place that builds and catches up cursors."""

    def __init__(self, maxlen: int = 100) -> None:
        self.broker = StillClockBroker(maxlen)
        self.hub = FakeHub(self.broker)
        self.broker.start(self.hub)

    def publish(self, channel: str, data: str, history: bool = True) -> Message:
        """Publish an ``update`` event and return the live message the hub got."""
        self.broker.subscribe([channel])
        self.broker.publish(channel, "update", data, history)
        return self.hub.live[-1]

    def cursor(
        self,
        channels: list[str],
        last_event_id: str | None = None,
        history: list[str] | None = None,
        resuming: bool | None = None,
    ) -> ChannelCursor:
        """Return a cursor; by default every channel has history and a given id resumes."""
        history = list(channels) if history is None else history
        resuming = last_event_id is not None if resuming is None else resuming
        return ChannelCursor(list(channels), history, last_event_id, resuming)

    def catch_up(self, cursor: ChannelCursor, max_bytes: int | None = None) -> tuple[bytes, bool]:
        return cursor.catch_up(self.hub, max_bytes)

    def synced(self, channels: list[str], last_event_id: str | None = None) -> ChannelCursor:
        """Return a cursor that has caught up (asserting that it did)."""
        cursor = self.cursor(channels, last_event_id)
        _, done = self.catch_up(cursor)
        assert done and cursor.synced
        self.broker.reads.clear()
        return cursor


@pytest.fixture
def stage():
    return Stage()


def live(channel: str, position: Position | None, data: str) -> Message:
    """Return a live message as a Redis subscriber decodes it (a new object, not history's)."""
    return Message(channel, "update", data, position)


# --- the bytes expected -------------------------------------------------------

NEWS, ALERTS = channel_tag("news"), channel_tag("alerts")  # "alerts" sorts first in an id


def body(data: str) -> bytes:
    return b"event: update\ndata: %s\n\n" % data.encode()


def frame(event_id: str, data: str) -> bytes:
    return b"id: %s\nevent: update\ndata: %s\n\n" % (event_id.encode(), data.encode())


def id_only(event_id: str) -> bytes:
    return b"id: %s\n\n" % event_id.encode()


def reset(*channels: str, event: str = "stream-reset") -> bytes:
    names = ",".join(f'"{channel}"' for channel in channels)
    return b'event: %s\ndata: {"channels":[%s]}\n\n' % (event.encode(), names.encode())


def publish_news(stage: Stage, count: int = 4) -> None:
    """Publish ``e0`` ... on "news": ids 1000-0, 1000-1, ..."""
    for index in range(count):
        stage.publish("news", f"e{index}")


def publish_both(stage: Stage) -> None:
    """news: e0 1000-0, e1 1000-1, e2 1000-2; alerts: a0 1000-0, a1 1000-1."""
    for channel, data in [("news", "e0"), ("alerts", "a0"), ("news", "e1")]:
        stage.publish(channel, data)
    for channel, data in [("alerts", "a1"), ("news", "e2")]:
        stage.publish(channel, data)


# --- initial positions ----------------------------------------------------------

BOTH = ["news", "alerts"]


@pytest.mark.parametrize(
    "channels, history, last_event_id, resuming, positions, synced",
    [
        (["news"], ["news"], "1000-3", True, {"news": (1000, 3)}, False),
        (["news"], ["news"], "0-0", True, {"news": (0, 0)}, False),
        (["news"], ["news"], None, False, {}, False),
        (["news"], ["news"], "abc", True, {}, False),
        (["news"], ["news"], "1000-3", False, {}, False),
        (BOTH, BOTH, f"{NEWS}:1000-1,{ALERTS}:1000-2", True, {"news": (1000, 1), "alerts": (1000, 2)}, False),
        (BOTH, BOTH, f"{ALERTS}:1000-2", True, {"alerts": (1000, 2)}, False),
        (BOTH, BOTH, f"{NEWS}:junk,{ALERTS}:1000-2", True, {"alerts": (1000, 2)}, False),
        (BOTH, BOTH, "1000-1", True, {}, False),
        (["news", "chat"], ["news"], "1000-1", True, {"news": (1000, 1)}, False),
        (["chat"], [], "1000-1", True, {}, True),
    ],
    ids=["single", "zero", "absent", "malformed", "not resuming", "multi", "multi, one channel",
         "multi, one malformed", "multi, bare id", "one history channel of two", "no history"],
)  # fmt: skip
def test_initial_positions_come_from_the_last_event_id(
    stage, channels, history, last_event_id, resuming, positions, synced
):
    """The cursor starts at the positions the Last-Event-ID gives for its history channels."""
    cursor = stage.cursor(channels, last_event_id, history=history, resuming=resuming)
    assert cursor.positions == positions
    assert cursor.synced is synced
    assert cursor.sent_id == last_event_id
    assert cursor.held == []


def test_a_stream_without_history_is_not_resuming():
    """A Last-Event-ID means nothing to a stream whose channels keep no history."""
    cursor = Stage().cursor(["chat"], "1000-1", history=[], resuming=True)
    assert cursor.resuming is False


# --- catching up one channel ---------------------------------------------------

NEWS_TIP = id_only("1000-3")


@pytest.mark.parametrize(
    "last_event_id, expected",
    [
        ("1000-1", frame("1000-2", "e2") + frame("1000-3", "e3")),
        ("1000-0", frame("1000-1", "e1") + frame("1000-2", "e2") + frame("1000-3", "e3")),
        ("0-0", frame("1000-0", "e0") + frame("1000-1", "e1") + frame("1000-2", "e2") + frame("1000-3", "e3")),
        ("1000-3", b""),
        (None, NEWS_TIP),  # a new client starts at the tip: nothing replayed, the id given
        ("abc", reset("news") + NEWS_TIP),
        ("1000-9", reset("news") + NEWS_TIP),  # from the future
        ("2000-0", reset("news") + NEWS_TIP),
        ("999-5", reset("news") + NEWS_TIP),  # never issued by this history
    ],
    ids=["after 1000-1", "after 1000-0", "from 0-0", "at the tip", "new client", "malformed",
         "future sequence", "future ms", "never issued"],
)  # fmt: skip
def test_catch_up_replays_what_follows_the_position(stage, last_event_id, expected):
    """Events after the position come in order, each with its id; an unusable one resets."""
    publish_news(stage)
    cursor = stage.cursor(["news"], last_event_id)
    assert stage.catch_up(cursor) == (expected, True)
    assert cursor.synced is True
    assert cursor.positions == {"news": (1000, 3)}
    assert cursor.sent_id == "1000-3"


@pytest.mark.parametrize(
    "last_event_id, expected",
    [
        ("1000-0", reset("news") + NEWS_TIP),  # trimmed: events after it are gone
        ("1000-1", frame("1000-2", "e2") + frame("1000-3", "e3")),  # the last trimmed is known
        ("1000-2", frame("1000-3", "e3")),
    ],
)
def test_a_position_trimmed_from_history_resets(last_event_id, expected):
    """With history trimmed to 2 events, a position before what is kept gets a stream-reset."""
    stage = Stage(maxlen=2)
    publish_news(stage)
    cursor = stage.cursor(["news"], last_event_id)
    assert stage.catch_up(cursor) == (expected, True)


@pytest.mark.parametrize(
    "hub_tip, expected, reads, learned",
    [
        ((1000, 1), id_only("1000-1"), [], []),
        (None, id_only("1000-3"), [("news", None, 0)], [("news", (1000, 3))]),
    ],
    ids=["hub knows the tip", "tip read and taught"],
)
def test_a_new_client_starts_at_the_tip(stage, hub_tip, expected, reads, learned):
    """Without a Last-Event-ID the stream starts at the hub's tip, read from history if unknown."""
    publish_news(stage)
    if hub_tip is not None:
        stage.hub.tips["news"] = hub_tip
    cursor = stage.cursor(["news"])
    assert stage.catch_up(cursor) == (expected, True)
    assert stage.broker.reads == reads
    assert stage.hub.learned == learned


def test_a_new_client_of_an_empty_channel_starts_at_zero(stage):
    """A channel never published to has the tip 0-0, which the client is given as its id."""
    cursor = stage.cursor(["news"])
    assert stage.catch_up(cursor) == (id_only("0-0"), True)
    assert stage.hub.learned == [("news", (0, 0))]


def test_catch_up_pages_through_long_histories():
    """More than a batch of missed events is read in pages of 500, each after the last sent."""
    stage = Stage(maxlen=2000)
    publish_news(stage, 1201)
    cursor = stage.cursor(["news"], "0-0")
    out, done = stage.catch_up(cursor)
    assert done is True
    assert out == b"".join(frame(f"1000-{index}", f"e{index}") for index in range(1201))
    assert stage.broker.reads == [
        ("news", (0, 0), 500),
        ("news", (1000, 499), 500),
        ("news", (1000, 999), 500),
    ]


# --- a byte budget -----------------------------------------------------------------


def batches(stage: Stage, cursor: ChannelCursor, max_bytes: int) -> list[bytes]:
    """Catch ``cursor`` up one batch at a time, as a stream does between its writes."""
    out = []
    while True:
        chunk, read = stage.catch_up(cursor, max_bytes)
        assert read
        out.append(chunk)
        if cursor.synced:
            return out


def test_a_catch_up_within_a_byte_budget_goes_in_batches_that_fit_it():
    """1,200 missed events of 100 bytes, 1,000 bytes a batch: batches of 8 events, the same bytes."""
    stage = Stage(maxlen=2000)
    for index in range(1200):
        stage.publish("news", f"{index:<100}")
    size = stage.hub.live[0].size  # 121 bytes: "event: update\ndata: " and the data
    cursor = stage.cursor(["news"], "0-0")
    out = batches(stage, cursor, 1000)
    expected = [frame(f"1000-{index}", f"{index:<100}") for index in range(1200)]
    assert b"".join(out) == b"".join(expected)
    assert 8 * size <= 1000 < 9 * size  # (the budget counts events without their id lines)
    assert [chunk.count(b"\nevent: ") for chunk in out] == [8] * 150
    # The broker read no more than a batch at a time.
    assert len(stage.broker.reads) == 150


def test_an_event_larger_than_the_byte_budget_is_replayed_alone():
    """A budget of 10 bytes still replays each event, one per batch."""
    stage = Stage()
    publish_news(stage, 3)
    cursor = stage.cursor(["news"], "0-0")
    out = batches(stage, cursor, 10)
    assert out == [frame(f"1000-{index}", f"e{index}") for index in range(3)]


def test_live_events_held_during_a_batched_catch_up_follow_its_last_batch(stage):
    """Held events are sent once, after the last batch; ids never go back."""
    publish_news(stage, 4)
    cursor = stage.cursor(["news"], "0-0")
    first, read = stage.catch_up(cursor, 30)
    assert (first, read, cursor.synced) == (frame("1000-0", "e0"), True, False)
    held = [stage.publish("news", "e4"), stage.publish("news", "e5")]
    assert [cursor.receive(message, 10, 1000) for message in held] == [b"", b""]
    assert cursor.held_bytes == sum(message.size for message in held)
    rest = batches(stage, cursor, 30)
    assert b"".join(rest) == b"".join(frame(f"1000-{index}", f"e{index}") for index in range(1, 6))
    assert (cursor.held, cursor.held_bytes) == ([], 0)


def test_receive_returns_none_when_held_events_exceed_the_byte_budget(stage):
    """While not synced, held events past ``max_bytes`` overflow; one alone never does."""
    cursor = stage.cursor(["news"], "0-0")
    big = [live("news", (1000, index), "x" * 100) for index in range(3)]
    assert cursor.receive(big[0], 10, 50) == b""  # larger than the budget, but alone
    assert cursor.receive(big[1], 10, 250) == b""
    assert cursor.receive(big[2], 10, 250) is None


def test_a_restart_reads_every_channel_again(stage):
    """``restart()`` in a batched catch-up: the next batch reads the channels done already too."""
    publish_both(stage)
    cursor = stage.cursor(BOTH, f"{ALERTS}:1000-0,{NEWS}:1000-0")
    stage.catch_up(cursor, 10)  # one event of news
    stage.catch_up(cursor, 10)  # the other: news is done
    assert cursor.pending == ["alerts"]
    cursor.restart()
    stage.broker.reads.clear()
    stage.catch_up(cursor, 10)
    assert [read[0] for read in stage.broker.reads] == ["news", "alerts"]


@pytest.mark.parametrize("event", ["stream-reset", "resync"])
def test_the_reset_event_is_named_by_the_setting(stage, settings, event):
    """The stream-reset event is named by SSE_RESET_EVENT and lists the channels in its data."""
    settings.SSE_RESET_EVENT = event
    publish_news(stage)
    cursor = stage.cursor(["news"], "abc")
    assert stage.catch_up(cursor) == (reset("news", event=event) + NEWS_TIP, True)


# --- catching up several channels ------------------------------------------------


@pytest.mark.parametrize(
    "last_event_id, expected",
    [
        (
            f"{ALERTS}:1000-0,{NEWS}:1000-0",
            b"id: %s\n%s" % (f"{ALERTS}:1000-0,{NEWS}:1000-1".encode(), body("e1"))
            + b"id: %s\n%s" % (f"{ALERTS}:1000-0,{NEWS}:1000-2".encode(), body("e2"))
            + b"id: %s\n%s" % (f"{ALERTS}:1000-1,{NEWS}:1000-2".encode(), body("a1")),
        ),
        (
            f"{ALERTS}:1000-0",  # no position for news: reset to its tip, then alerts' events
            reset("news") + b"id: %s\n%s" % (f"{ALERTS}:1000-1,{NEWS}:1000-2".encode(), body("a1")),
        ),
        (
            f"{ALERTS}:1000-1,{NEWS}:1000-9",  # news from the future
            reset("news") + id_only(f"{ALERTS}:1000-1,{NEWS}:1000-2"),
        ),
        ("garbage", reset("news", "alerts") + id_only(f"{ALERTS}:1000-1,{NEWS}:1000-2")),
        (f"{ALERTS}:1000-1,{NEWS}:1000-2", b""),
    ],
    ids=["both behind", "news missing", "news gap", "malformed", "at the tips"],
)
def test_multi_channel_catch_up_writes_every_channels_position(stage, last_event_id, expected):
    """Each replayed event's id carries all positions, in channel-name order; resets come first."""
    publish_both(stage)
    cursor = stage.cursor(BOTH, last_event_id)
    assert stage.catch_up(cursor) == (expected, True)
    assert cursor.positions == {"news": (1000, 2), "alerts": (1000, 1)}
    assert cursor.sent_id == f"{ALERTS}:1000-1,{NEWS}:1000-2"


def test_live_multi_channel_events_carry_every_channels_position(stage):
    """Live events after the catch-up write the id of the whole stream, not their own."""
    publish_both(stage)
    cursor = stage.synced(BOTH, f"{ALERTS}:1000-1,{NEWS}:1000-2")
    received = [
        cursor.receive(live("alerts", (1000, 2), "a2"), 10),
        cursor.receive(live("news", (1000, 3), "e3"), 10),
        cursor.receive(live("news", (1000, 3), "e3"), 10),
    ]
    assert received == [
        b"id: %s\n%s" % (f"{ALERTS}:1000-2,{NEWS}:1000-2".encode(), body("a2")),
        b"id: %s\n%s" % (f"{ALERTS}:1000-2,{NEWS}:1000-3".encode(), body("e3")),
        b"",
    ]


def test_one_history_channel_among_several_writes_its_bare_id(stage):
    """With one history channel of two, ids are that channel's position; the other has none."""
    publish_news(stage, 1)
    cursor = stage.cursor(["news", "chat"], "1000-0", history=["news"])
    assert stage.catch_up(cursor) == (b"", True)
    assert cursor.receive(live("news", (1000, 1), "e1"), 10) == b"id: 1000-1\n" + body("e1")
    assert cursor.receive(live("chat", None, "hi"), 10) == body("hi")


# --- live events ----------------------------------------------------------------


def test_live_events_are_held_until_the_catch_up(stage):
    """Before the catch-up a live event is held (b""), then sent after the replay, once."""
    publish_news(stage, 1)
    cursor = stage.cursor(["news"], "1000-0")
    held = [stage.publish("news", "e1"), stage.publish("news", "e2")]
    assert [cursor.receive(message, 10) for message in held] == [b"", b""]
    assert cursor.held == held
    # Both are in history and were held: each is sent once, by the replay.
    assert stage.catch_up(cursor) == (frame("1000-1", "e1") + frame("1000-2", "e2"), True)
    assert cursor.held == []


def test_held_events_newer_than_the_history_read_follow_the_replay(stage):
    """A held event the history read did not return yet is sent after the replayed ones."""
    publish_news(stage, 2)
    cursor = stage.cursor(["news"], "1000-0")
    assert cursor.receive(live("news", (1000, 1), "e1"), 10) == b""
    assert cursor.receive(live("news", (1000, 2), "e2"), 10) == b""
    out, done = stage.catch_up(cursor)
    assert (out, done) == (frame("1000-1", "e1") + frame("1000-2", "e2"), True)
    assert cursor.sent_id == "1000-2"


@pytest.mark.parametrize(
    "position, expected",
    [
        ((1000, 1), b""),  # older than the position
        ((1000, 2), b""),  # the one replayed last
        ((0, 0), b""),
        ((1000, 3), frame("1000-3", "x")),
        ((1001, 0), frame("1001-0", "x")),
    ],
)
def test_live_events_the_client_has_are_dropped(stage, position, expected):
    """Once synced at 1000-2, live events at or before it give b"", newer ones their frame."""
    publish_news(stage, 3)
    cursor = stage.synced(["news"], "1000-1")
    assert cursor.receive(live("news", position, "x"), 10) == expected
    assert cursor.positions == {"news": max(position, (1000, 2))}


def test_a_new_client_starts_with_its_first_held_event(stage):
    """A new client that got a live event before its catch-up starts there, without reading history."""
    publish_news(stage, 3)
    cursor = stage.cursor(["news"])
    assert cursor.receive(stage.publish("news", "e3"), 10) == b""
    assert stage.catch_up(cursor) == (frame("1000-3", "e3"), True)
    assert stage.broker.reads == []
    assert stage.hub.learned == []


def test_a_new_client_whose_start_covers_its_held_event_still_gets_it(stage):
    """The hub's start (a tip learned after the publish) at the held event: start just before it."""
    publish_news(stage, 3)  # e0 ... e2: 1000-0 ... 1000-2
    cursor = stage.cursor(["news"])
    assert cursor.receive(stage.publish("news", "e3"), 10) == b""
    stage.hub.starts["news"] = (1000, 3)  # covers e3, which is held, never sent
    assert stage.catch_up(cursor) == (frame("1000-3", "e3"), True)


def test_a_new_client_with_a_held_event_after_its_start_is_told_the_start_first(stage):
    """The hub's start before the held event: its id, then the event, as when the event comes later."""
    publish_news(stage, 3)  # e0 ... e2: 1000-0 ... 1000-2
    stage.hub.starts["news"] = (1000, 2)
    cursor = stage.cursor(["news"])
    assert cursor.receive(stage.publish("news", "e3"), 10) == b""
    assert stage.catch_up(cursor) == (id_only("1000-2") + frame("1000-3", "e3"), True)
    assert stage.broker.reads == []


def test_a_new_client_gets_a_late_live_event_older_than_its_tip(stage):
    """An event older than the tip a new client started at, arriving live, is sent, once."""
    stage.hub.tips["news"] = (1000, 3)
    cursor = stage.cursor(["news"])
    assert stage.catch_up(cursor) == (id_only("1000-3"), True)
    late = live("news", (1000, 2), "e2")
    assert cursor.receive(late, 10) == frame("1000-2", "e2")
    assert cursor.receive(late, 10) == b""


def test_a_new_client_starts_where_its_live_events_begin_and_is_never_told_a_later_id(stage):
    """Started at the hub's start position (its mark), the tip's events still on their way come first, then their id."""
    stage.hub.tips["news"] = (1000, 3)  # e2 and e3 are fanned out, not yet in this mailbox
    stage.hub.starts["news"] = (1000, 1)
    cursor = stage.cursor(["news"])
    cursor.attached({"news": ((1000, 1), 0)})
    assert stage.catch_up(cursor) == (id_only("1000-1"), True)
    assert stage.hub.asked == [("news", ((1000, 1), 0))]
    assert cursor.receive(live("news", (1000, 2), "e2"), 10) == frame("1000-2", "e2")
    assert cursor.receive(live("news", (1000, 3), "e3"), 10) == frame("1000-3", "e3")
    assert cursor.receive(live("news", (1000, 1), "e1"), 10) == b""  # before its start
    assert cursor.id_update() == b""


def test_a_new_multi_channel_client_is_told_only_positions_it_has_everything_before(stage):
    """Each channel starts at its own start position; the id written covers none of the events on their way."""
    stage.hub.tips.update({"news": (1000, 5), "alerts": (1000, 5)})
    stage.hub.starts.update({"news": (1000, 4), "alerts": (0, 0)})
    cursor = stage.cursor(BOTH)
    assert stage.catch_up(cursor) == (id_only(f"{ALERTS}:0-0,{NEWS}:1000-4"), True)
    assert cursor.receive(live("alerts", (1000, 5), "a5"), 10) == (
        b"id: %s\n" % f"{ALERTS}:1000-5,{NEWS}:1000-4".encode() + body("a5")
    )


@pytest.mark.parametrize(
    "channels, history, expected",
    [
        (["chat"], [], body("hi")),
        (["chat", "other"], [], body("hi")),
        (["news", "chat"], ["news"], body("hi")),
    ],
    ids=["single", "multi", "beside a history channel"],
)
def test_events_without_history_are_sent_without_an_id(stage, channels, history, expected):
    """An event with no position is sent as is, with no ``id:`` line, once synced."""
    cursor = stage.cursor(channels, history=history)
    stage.catch_up(cursor)
    assert cursor.receive(stage.publish("chat", "hi", history=False), 10) == expected


# --- losing the subscription ----------------------------------------------------


def test_lose_sync_holds_live_events_until_the_next_catch_up(stage):
    """After lose_sync, live events wait; the next catch-up sends what history has, once."""
    publish_news(stage, 2)
    cursor = stage.synced(["news"], "1000-0")
    cursor.lose_sync()
    assert cursor.synced is False
    stage.publish("news", "e2")  # missed live during the outage
    assert cursor.receive(stage.publish("news", "e3"), 10) == b""
    assert stage.catch_up(cursor) == (frame("1000-2", "e2") + frame("1000-3", "e3"), True)
    assert stage.broker.reads == [("news", (1000, 1), 500)]
    assert cursor.receive(live("news", (1000, 3), "e3"), 10) == b""


def test_lose_sync_then_nothing_new_catches_up_to_nothing(stage):
    """A catch-up after lose_sync with no new events writes nothing, not even an id."""
    publish_news(stage, 2)
    cursor = stage.synced(["news"], "1000-0")
    cursor.lose_sync()
    assert stage.catch_up(cursor) == (b"", True)


def test_lose_sync_without_history_changes_nothing(stage):
    """A stream without history stays live through lose_sync: nothing could be replayed."""
    cursor = stage.cursor(["chat"], history=[])
    cursor.lose_sync()
    assert cursor.synced is True
    assert cursor.receive(live("chat", None, "hi"), 10) == body("hi")
    assert cursor.flush_held() == b""


# --- the id, limits, failures ----------------------------------------------------


def test_id_update_gives_the_id_only_when_the_client_is_behind(stage):
    """``id_update`` writes ``id:`` once when positions moved past the client's id, else b""."""
    publish_both(stage)
    cursor = stage.cursor(BOTH, "garbage")
    assert cursor.id_update() == b""  # not synced, no positions
    out, _ = stage.catch_up(cursor)
    assert out.endswith(id_only(f"{ALERTS}:1000-1,{NEWS}:1000-2"))
    assert cursor.id_update() == b""  # the client has it now
    cursor.lose_sync()
    assert cursor.id_update() == b""


def test_id_update_waits_for_a_complete_catch_up(stage):
    """Positions moved by a failed catch-up are not given as an id until a retry succeeds."""
    publish_both(stage)
    stage.broker.failing["alerts"] = 1
    cursor = stage.cursor(BOTH, f"{ALERTS}:1000-1")  # news resets to its tip
    assert stage.catch_up(cursor) == (b"", False)
    assert cursor.positions["news"] == (1000, 2)
    assert cursor.id_update() == b""
    assert stage.catch_up(cursor) == (
        reset("news") + id_only(f"{ALERTS}:1000-1,{NEWS}:1000-2"),
        True,
    )
    assert cursor.id_update() == b""


def test_id_update_is_empty_without_history(stage):
    """A stream without history never writes an id of its own."""
    cursor = stage.cursor(["chat"], history=[])
    assert cursor.id_update() == b""


@pytest.mark.parametrize(
    "limit, expected",
    [
        (0, [None]),
        (1, [b"", None, None]),
        (2, [b"", b"", None]),
        (3, [b"", b"", b""]),
    ],
)
def test_receive_returns_none_when_held_events_exceed_the_limit(stage, limit, expected):
    """While not synced, receive holds up to ``limit`` events and returns None beyond."""
    cursor = stage.cursor(["news"], "0-0")
    messages = [live("news", (1000, index), f"e{index}") for index in range(len(expected))]
    assert [cursor.receive(message, limit) for message in messages] == expected


def test_receive_ignores_the_limit_once_synced(stage):
    """A synced cursor holds nothing, so a limit of 0 does not overflow."""
    cursor = stage.synced(["news"], "0-0")
    assert cursor.receive(live("news", (1000, 0), "e0"), 0) == frame("1000-0", "e0")


def test_a_failed_catch_up_returns_what_was_replayed_and_goes_on_from_there(stage):
    """A failing read returns the replay so far and False; the retry continues after it."""
    publish_both(stage)
    stage.broker.failing["alerts"] = 1
    cursor = stage.cursor(BOTH, f"{ALERTS}:1000-0,{NEWS}:1000-0")
    first = b"id: %s\n%s" % (f"{ALERTS}:1000-0,{NEWS}:1000-1".encode(), body("e1"))
    first += b"id: %s\n%s" % (f"{ALERTS}:1000-0,{NEWS}:1000-2".encode(), body("e2"))
    assert stage.catch_up(cursor) == (first, False)
    assert (cursor.synced, cursor.failures) == (False, 1)
    assert cursor.receive(live("alerts", (1000, 2), "a2"), 10) == b""  # still held
    stage.broker.reads.clear()
    retry = b"id: %s\n%s" % (f"{ALERTS}:1000-1,{NEWS}:1000-2".encode(), body("a1"))
    retry += b"id: %s\n%s" % (f"{ALERTS}:1000-2,{NEWS}:1000-2".encode(), body("a2"))
    assert stage.catch_up(cursor) == (retry, True)
    assert stage.broker.reads == [("news", (1000, 2), 500), ("alerts", (1000, 0), 500)]
    assert (cursor.synced, cursor.failures) == (True, 0)


def test_failures_count_catch_ups_that_failed_in_a_row(stage):
    """``failures`` grows with each failed catch-up and returns to 0 on success."""
    publish_news(stage)
    stage.broker.failing["news"] = 2
    cursor = stage.cursor(["news"], "1000-3")
    counts = []
    for _ in range(3):
        stage.catch_up(cursor)
        counts.append(cursor.failures)
    assert counts == [1, 2, 0]


def test_a_new_clients_held_event_survives_a_failed_catch_up(stage):
    """A new client whose catch-up fails and is retried still gets its first held event, no reset."""
    publish_news(stage, 1)
    stage.broker.clock_ms = 2000
    cursor = stage.cursor(BOTH)
    assert cursor.receive(stage.publish("news", "e1"), 10) == b""  # 2000-0
    stage.broker.failing["alerts"] = 1
    assert stage.catch_up(cursor) == (b"", False)
    expected = b"id: %s\n%s" % (f"{ALERTS}:0-0,{NEWS}:2000-0".encode(), body("e1"))
    assert stage.catch_up(cursor) == (expected, True)
