"""Every benchmark scenario, at a tiny size, against both servers: the benchmark code cannot rot.

These run the same functions as ``python -m benchmarks.run`` (real redis-server,
gunicorn with the project's gunicorn.conf.py, the raw gevent ceiling, the load
client's processes) and check that each completes with no loss and figures that
make sense. They assert no speed: the numbers belong to the benchmark run.
"""

from __future__ import annotations

import pytest

from benchmarks import run, scenarios

pytestmark = pytest.mark.integration

SERVERS = ["library", "library-worker", "ceiling"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One redis-server and one publisher process for the module; servers start per scenario."""
    with scenarios.Bench.running(tmp_path_factory.mktemp("bench"), client_processes=1) as bench:
        yield bench


@pytest.mark.parametrize("kind", SERVERS)
def test_idle_holds_every_stream_and_delivers_a_first_event(bench, kind):
    """idle: all streams open, stay open and get the probe; memory and fds are measured."""
    result = scenarios.idle(bench, kind, n=30, hold=0.2)
    assert result["opened"] == result["held"] == result["probed"] == 30
    assert 0 < result["ready_s"] <= result["first_event_s"]
    assert result["fds"] >= 30
    assert result["greenlets"] >= 30
    assert 1 <= result["redis_connections"] <= 2
    assert result["errors"] == {}
    assert result["server_ends"] == 0


@pytest.mark.parametrize("kind", [*SERVERS, "library-metrics"])
def test_fanout_delivers_every_event_once_with_latencies(bench, kind):
    """fanout: the paced events and the burst reach every subscriber exactly once."""
    result = scenarios.fanout(bench, kind, n=10, rate=100, seconds=0.2, burst=100)
    assert result["expected"] == 10 * (20 + 100)
    assert result["delivered"] == result["expected"]
    assert result["lost"] == result["duplicates"] == 0
    assert 0 <= result["steady_p50_ms"] <= result["steady_p99_ms"] <= result["steady_max_ms"]
    assert 0 <= result["burst_p50_ms"] <= result["burst_max_ms"]
    assert result["deliveries_per_s"] > 0
    assert result["cpu_us_per_delivery"] >= 0
    assert result["errors"] == {}


@pytest.mark.parametrize("kind", SERVERS)
def test_many_channels_delivers_each_channel_its_own_events(bench, kind):
    """many-channels: one event per channel per round, none lost, none repeated."""
    result = scenarios.many_channels(bench, kind, n=15, rounds=2)
    assert result["expected"] == 30
    assert result["lost"] == result["duplicates"] == 0
    assert result["hub_channels"] >= 15
    assert result["p50_ms"] is not None and result["p50_ms"] <= result["max_ms"]
    assert result["errors"] == {}


@pytest.mark.parametrize("kind", SERVERS)
def test_churn_leaves_the_server_as_it_found_it(bench, kind):
    """churn: every cycle completes; streams, fds, greenlets and Redis connections come back."""
    result = scenarios.churn(bench, kind, cycles=60, concurrency=10)
    assert result["cycles"] == 60 and result["failed"] == 0
    assert result["streams_after"] == 0
    assert result["hub_channels_after"] == 0
    assert result["fds_after"] <= result["fds_before"]
    assert result["greenlets_after"] <= result["greenlets_before"]
    assert result["redis_after"] <= result["redis_before"] <= 2


@pytest.mark.parametrize("kind", SERVERS)
def test_replay_catches_every_client_up_without_duplicates(bench, kind):
    """replay: clients resuming 20 events back get those and the live ones, each once."""
    result = scenarios.replay(bench, kind, n=10, back=20, live=10, rate=200)
    assert result["opened"] == 10
    assert result["expected"] == 10 * 30
    assert result["lost"] == result["duplicates"] == result["extra"] == 0
    assert 0 < result["caught_up_s"] <= result["all_s"]
    assert result["errors"] == {}


@pytest.mark.parametrize("kind", SERVERS)
def test_send_event_cost_measures_both_history_modes(bench, kind):
    """send-event: events/s with history on and off, from the publisher process."""
    result = scenarios.send_event_cost(bench, kind, seconds=0.2)
    assert result["history_on_per_s"] > 0 and result["history_off_per_s"] > 0
    assert result["history_on_us"] > 0 and result["history_off_us"] > 0


def test_driver_table_has_a_column_and_a_ratio_for_the_librarys_worker():
    """With the library-worker server in a run, the table shows its figures and their ratios."""
    line = {
        "scenario": "idle",
        "params": {"n": 10},
        "library": {"ready_s": 6.0},
        "library-worker": {"ready_s": 4.0},
        "ceiling": {"ready_s": 2.0},
        "ratio": {"ready_s": 3.0},
        "worker_ratio": {"ready_s": 2.0},
    }
    lines = run.table([line]).splitlines()
    [row] = [text for text in lines if " ready_s " in text]
    columns = ["scenario", "figure", "library", "library-worker", "ceiling", "ratio"]

    assert lines[0].split() == [*columns, "worker_ratio"]
    assert row.split()[-5:] == ["6", "4", "2", "3", "2"]


def test_driver_prints_a_table_with_ratios_and_the_goals():
    """The driver's table and goal list render the JSON lines a run produces."""
    line = {
        "scenario": "fanout",
        "params": {"n": 10},
        "library": {"lost": 0, "cpu_us_per_delivery": 3.0, "redis_connections": 2},
        "ceiling": {"lost": 0, "cpu_us_per_delivery": 1.5, "redis_connections": 1},
        "ratio": {"lost": None, "cpu_us_per_delivery": 2.0, "redis_connections": 2.0},
    }
    table = run.table([line])
    assert "fanout n=10" in table
    assert "cpu_us_per_delivery" in table and "2" in table.split("cpu_us_per_delivery")[1]
    goals = run.goals([line])
    assert "met      <= 6 us worker CPU per delivery (fanout burst): 3.0 us" in goals
    assert "<= 2 Redis connections per worker: max 2" in goals


@pytest.mark.parametrize("kind", ["library", "library-worker"])
@pytest.mark.parametrize("mode", ["kill", "hup"])
def test_storm_brings_every_client_back_with_every_event(bench, kind, mode):
    """The storm scenario, tiny: the worker dies (or reloads), every client resumes, nothing lost."""
    result = scenarios.storm(
        bench, kind, n=20, channels=2, rate=20, mode=mode, before=0.5, after=2.5
    )

    assert result["worker_replaced"] is True
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert result["reconnects"] >= 20
    assert result["caught_up_s"] is not None
    assert result["history_reads"] + result["shared_reads"] >= 2
    assert result["errors"] == {}


def test_storm_restarts_the_ceiling_and_its_clients_lose_nothing(bench):
    """The ceiling killed and started again on its port: every client resumes with XRANGE."""
    result = scenarios.storm(bench, "ceiling", n=20, channels=2, rate=20, before=0.5, after=2.5)

    assert result["worker_replaced"] is True
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert result["caught_up_s"] is not None
    assert result["errors"] == {}


def test_storm_does_not_reload_the_ceiling_which_has_no_master(bench):
    """HUP means a master reloading its workers: for the ceiling the storm says it does not apply."""
    assert "skipped" in scenarios.storm(bench, "ceiling", n=5, mode="hup")


def test_subscriber_paths_read_every_message_and_compare_per_message_cost():
    """benchmarks.subscriber, tiny: both subscriber paths read the burst; the share is derived."""
    from benchmarks import subscriber

    result = subscriber.measure(messages=300, rounds=1, subscribers=1000, per_delivery_us=1.0)

    assert result["resp_us_per_message"] > 0 and result["redis_py_us_per_message"] > 0
    extra = result["redis_py_us_per_message"] - result["resp_us_per_message"]
    assert result["extra_us_per_message"] == pytest.approx(extra, abs=0.02)
    assert result["extra_share_of_delivery"] == pytest.approx(extra / 1000, abs=1e-4)
