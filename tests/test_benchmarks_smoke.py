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


@pytest.mark.parametrize("kind", [*SERVERS, "library-grip"])
def test_idle_holds_every_stream_and_delivers_a_first_event(bench, kind):
    """idle: all streams open, stay open and get the probe; memory and fds are measured."""
    result = scenarios.idle(bench, kind, n=30, hold=0.2)
    assert result["opened"] == result["held"] == result["probed"] == 30
    assert 0 < result["ready_s"] <= result["first_event_s"]
    assert result["fds"] >= 30
    if kind == "library-grip":
        assert result["greenlets"] == 0  # Pushpin holds the streams, not Django
    else:
        assert result["greenlets"] >= 30
    assert 1 <= result["redis_connections"] <= 2
    assert result["errors"] == {}
    assert result["server_ends"] == 0


@pytest.mark.parametrize("kind", [*SERVERS, "library-metrics", "library-grip"])
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

    assert result["library_us_per_message"] > 0 and result["redis_py_us_per_message"] > 0
    extra = result["redis_py_us_per_message"] - result["library_us_per_message"]
    assert result["extra_us_per_message"] == pytest.approx(extra, abs=0.02)
    assert result["extra_share_of_delivery"] == pytest.approx(extra / 1000, abs=1e-4)


# On a 3-master Redis Cluster ------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_bench(tmp_path_factory):
    """A 3-master cluster and a publisher with SSE_REDIS_CLUSTER = True, for the module."""
    with scenarios.Bench.running(
        tmp_path_factory.mktemp("cluster-bench"), client_processes=1, topology="cluster"
    ) as bench:
        yield bench


def masters_of(channels):
    """The indexes of the masters whose slots hold ``channels`` (as the broker names them)."""
    from redis.crc import key_slot

    from tests.support.servers import CLUSTER_SLOT_RANGES

    slots = [key_slot(f"sse:{{{channel}}}".encode()) for channel in channels]
    return {
        index
        for index, (first, last) in enumerate(CLUSTER_SLOT_RANGES)
        for slot in slots
        if first <= slot <= last
    }


def assert_one_subscriber_per_shard_with_channels(result, channels):
    """One subscriber connection on each master with a channel, none elsewhere; few commands."""
    nodes = result["redis_nodes"]
    print("redis per master (subscribers+commands, channels):", nodes)
    assert len(nodes) == 3
    with_channels = {i for i, node in enumerate(nodes) if node["channels"]}
    # The streams' channels and the control channel are there (a warm-up channel may linger).
    assert masters_of([*channels, "django-sse control"]) <= with_channels
    assert [node["subscribers"] for node in nodes] == [int(i in with_channels) for i in range(3)]
    assert all(node["commands"] <= 1 for node in nodes)
    assert result["redis_connections"] == sum(n["subscribers"] + n["commands"] for n in nodes)


def test_idle_on_the_cluster_holds_every_stream_with_a_subscriber_per_shard(cluster_bench):
    """idle on the cluster: all streams open and probed; one subscriber connection per shard used."""
    result = scenarios.idle(cluster_bench, "library", n=30, hold=0.2)
    assert result["opened"] == result["held"] == result["probed"] == 30
    assert result["errors"] == {} and result["server_ends"] == 0
    assert result["probes"] >= 1  # SPUBLISH, counted over the masters
    assert_one_subscriber_per_shard_with_channels(result, ["idle"])


def test_fanout_over_every_shard_of_the_cluster_delivers_every_event_once(cluster_bench):
    """fanout with 3 channels, one per master: no loss, a subscriber connection on every master."""
    channels = scenarios.spread_channels("fanout", 3)
    assert masters_of(channels) == {0, 1, 2}
    result = scenarios.fanout(
        cluster_bench, "library", n=12, rate=100, seconds=0.2, burst=100, channels=3
    )
    assert result["expected"] == 12 * (20 + 100)
    assert result["lost"] == result["duplicates"] == 0
    assert result["delivered"] == result["expected"]
    assert result["errors"] == {}
    assert_one_subscriber_per_shard_with_channels(result, channels)
    assert [node["subscribers"] for node in result["redis_nodes"]] == [1, 1, 1]


def test_the_ceiling_is_left_out_of_cluster_runs(cluster_bench):
    """The ceiling does not speak cluster: the driver records why, and starts nothing."""
    line = run.run_scenario(cluster_bench, "idle", {"n": 5}, 1, ["ceiling"])
    assert line["redis"] == "cluster"
    assert "does not speak Redis Cluster" in line["ceiling"]["skipped"]
    with pytest.raises(ValueError, match="ceiling"):
        scenarios.idle(cluster_bench, "ceiling", n=5)


def test_driver_gives_cluster_lines_their_ratio_to_the_single_node_line():
    """cluster_ratio: each library figure on the cluster over the same server's single-node one."""
    single = {"scenario": "fanout", "params": {"n": 10}, "redis": "single"}
    single["library"] = {"cpu_us_per_delivery": 2.0, "redis_connections": 2}
    cluster = {"scenario": "fanout", "params": {"n": 10}, "redis": "cluster"}
    cluster["library"] = {
        "cpu_us_per_delivery": 3.0,
        "redis_connections": 5,
        "redis_nodes": [
            {"subscribers": 1, "commands": 1, "channels": 1},
            {"subscribers": 1, "commands": 1, "channels": 2},
            {"subscribers": 0, "commands": 1, "channels": 0},
        ],
    }
    cluster["ceiling"] = {"skipped": "the ceiling does not speak Redis Cluster"}
    run.add_cluster_ratio(cluster, single)
    assert cluster["cluster_ratio"]["library"]["cpu_us_per_delivery"] == 1.5
    assert cluster["cluster_ratio"]["library"]["redis_connections"] == 2.5

    lines = run.table([single, cluster]).splitlines()
    assert lines[0].split()[-1] == "cluster_ratio"
    below = lines[next(i for i, text in enumerate(lines) if "(cluster)" in text) :]
    [row] = [text for text in below if " cpu_us_per_delivery " in text]
    assert row.split()[-4:] == ["3", "-", "-", "1.5"]
    [nodes] = [text for text in below if " redis_nodes " in text]
    assert "1+1 1+1 0+1" in nodes
    assert "and master: max 2" in run.goals([cluster])


def test_driver_sizes_every_variant_of_a_scenario_once():
    """--n sizes each parameter set; the variants that then coincide run once."""
    assert run.parameter_sets("fanout", 50) == [{"n": 50}, {"n": 50, "channels": 3}]
    assert run.parameter_sets("idle", 50) == [{"n": 50}]


# --- the ASGI mode (library-asgi: uvicorn, one worker) ---------------------------------------
# sse-starlette, its comparison, needs benchmarks/requirements.txt, which the tests do not
# install: the benchmark run exercises it.


def test_idle_under_uvicorn_holds_every_stream_with_at_most_two_redis_connections(bench):
    """idle, library-asgi: all streams open, stay open and get the probe; no greenlet."""
    result = scenarios.idle(bench, "library-asgi", n=30, hold=0.2)
    assert result["opened"] == result["held"] == result["probed"] == 30
    assert 0 < result["ready_s"] <= result["first_event_s"]
    assert result["greenlets"] == 0
    assert 1 <= result["redis_connections"] <= 2
    assert result["errors"] == {}


def test_fanout_and_churn_under_uvicorn_lose_nothing_and_leave_nothing(bench):
    """fanout and churn, library-asgi: every event once; after churn no stream nor fd left."""
    fanout = scenarios.fanout(bench, "library-asgi", n=10, rate=100, seconds=0.2, burst=100)
    churn = scenarios.churn(bench, "library-asgi", cycles=60, concurrency=10)
    assert fanout["delivered"] == fanout["expected"] == 10 * (20 + 100)
    assert fanout["lost"] == fanout["duplicates"] == 0
    assert churn["cycles"] == 60 and churn["failed"] == 0
    assert churn["streams_after"] == 0
    assert churn["fds_after"] <= churn["fds_before"]


def test_the_django_floor_holds_every_stream_without_the_library_and_serves_idle_only(bench):
    """django-floor: Django's handler alone opens and holds every stream, with no Redis connection."""
    result = scenarios.idle(bench, "django-floor", n=30, hold=0.2)
    line = run.run_scenario(bench, "fanout", {"n": 10}, 1, ["django-floor"])

    assert result["opened"] == result["held"] == result["probed"] == 30
    assert result["redis_connections"] == 0  # no hub: the library is not installed
    assert result["errors"] == {}
    assert line["django-floor"] == {"skipped": "the Django floor serves the idle scenario only"}


def test_driver_compares_the_asgi_mode_with_sse_starlette_and_judges_its_goals():
    """A line with library-asgi and sse-starlette: their columns, the ratio, and the ASGI goals."""
    line = {
        "scenario": "idle",
        "params": {"n": 10000},
        "library-asgi": {"held": 10000, "ready_s": 2.0, "rss_per_stream_kb": 20.0},
        "sse-starlette": {"held": 10000, "ready_s": 5.0, "rss_per_stream_kb": 30.0},
        "asgi_vs_starlette": {"held": 1.0, "ready_s": 0.4, "rss_per_stream_kb": 0.67},
    }
    header = run.table([line]).splitlines()[0].split()
    goals = run.asgi_goals([line])

    assert header[-3:] == ["library-asgi", "sse-starlette", "asgi_vs_starlette"]
    assert "met      ASGI: 0 loss (idle n=10000): 0" in goals
    assert "met      ASGI: ready in <= half of sse-starlette's time (idle n=10000)" in goals
    assert "met      ASGI: RSS per idle stream below sse-starlette's (idle n=10000)" in goals
