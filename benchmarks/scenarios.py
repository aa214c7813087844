"""The benchmark scenarios: each runs once against one server and returns its figures.

Every scenario starts a fresh server (``Bench.serving``), warms it up with a
few streams (so Django's first-request imports do not count as per-stream
memory), runs bounded in time and count, and stops the server by PID. The
same functions serve ``python -m benchmarks.run`` (full sizes) and the smoke
tests (tiny sizes). Times are seconds, memory KiB or MiB as named, latencies
milliseconds, CPU microseconds per delivery.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import CLUSTER_SLOT_RANGES

from .loadclient import ClientPool
from .publisher import Publisher
from .servers import (
    SERVERS,
    HttpServer,
    RedisClusterProcess,
    RedisProcess,
    redis_connections,
    redis_env,
    redis_nodes,
    server_stats,
    worker_stats,
)

WAIT = 60.0  # the longest any delivery may take before it counts as lost


@dataclass
class Bench:
    """What scenarios share: one Redis (a server or a cluster), one publisher process, where logs go."""

    redis: RedisProcess | RedisClusterProcess
    publisher: Publisher
    log_dir: Path
    client_processes: int | None = None  # None: one per core for large runs
    profile_dir: Path | None = None  # sample the serving process with py-spy, into this folder
    profile_kinds: tuple[str, ...] = ("library", "library-worker", "library-asgi", "sse-starlette")

    @classmethod
    @contextlib.contextmanager
    def running(
        cls,
        log_dir: str | Path,
        client_processes: int | None = None,
        profile_dir: str | Path | None = None,
        topology: str = "single",
    ) -> Iterator[Bench]:
        """Start the Redis of ``topology`` ("single" or "cluster") and the publisher; stop both."""
        log_dir = Path(log_dir) / topology
        log_dir.mkdir(parents=True, exist_ok=True)
        redis = RedisClusterProcess(log_dir) if topology == "cluster" else RedisProcess(log_dir)
        redis.start()
        try:
            with Publisher(redis_env(redis), log_dir / "publisher.log") as publisher:
                yield cls(
                    redis,
                    publisher,
                    log_dir,
                    client_processes,
                    Path(profile_dir) if profile_dir else None,
                )
        finally:
            redis.stop()

    @property
    def topology(self) -> str:
        return self.redis.topology

    def unsupported(self, kind: str, scenario: str | None = None) -> str | None:
        """Why a server of ``kind`` cannot run on this Redis (or ``scenario`` at all), or None."""
        if kind == "django-floor" and scenario not in (None, "idle"):
            return "the Django floor serves the idle scenario only"
        if kind == "ceiling" and self.topology == "cluster":
            return "the ceiling does not speak Redis Cluster"
        if kind == "sse-starlette" and self.topology == "cluster":
            return "the sse-starlette app does not speak Redis Cluster"
        return None

    def flush(self) -> None:
        """Empty every master."""
        for node in self.redis.masters:
            with node.client() as client:
                client.flushall()

    @contextlib.contextmanager
    def serving(self, kind: str, label: str) -> Iterator[HttpServer]:
        """Start a fresh server of ``kind`` (a key of ``SERVERS``) on an empty Redis."""
        reason = self.unsupported(kind)
        if reason:
            raise ValueError(f"Cannot serve {kind!r} on this Redis: {reason}.")
        self.flush()
        server = SERVERS[kind](self.redis.url, self.log_dir)
        server.env.update(redis_env(self.redis))
        server.start()
        grip_url = getattr(server, "control_url", None)  # GRIP mode: publish to the proxy too
        if grip_url is not None:
            self.publisher.call("grip", url=grip_url)
        sampler = None
        if self.profile_dir is not None and kind in self.profile_kinds:
            from .profiling import Sampler

            self.profile_dir.mkdir(parents=True, exist_ok=True)
            if self.topology != "single":
                label = f"{label}-{self.topology}"
            sampler = Sampler(server.worker_pid, self.profile_dir / f"{label}-{kind}.txt")
        try:
            yield server
        finally:
            if sampler is not None:
                sampler.stop()
            if grip_url is not None:
                self.publisher.call("grip", url=None)
            server.stop()

    def clients(self, server: HttpServer, streams: int) -> ClientPool:
        processes = self.client_processes
        if processes is None:
            processes = 1 if streams <= 200 else min(2, os.cpu_count() or 1)
        return ClientPool(server.client_port, processes)


# Helpers -----------------------------------------------------------------------


def probe_until(
    bench: Bench, pool: ClientPool, channels: list[str], streams: int, timeout: float = WAIT
) -> dict:
    """Publish probe events until every stream received one (its subscription is live).

    One probe reaches every stream that is subscribed when it is published; another
    follows only after a growing pause, so a slow server is not buried in probes.
    """
    deadline = time.monotonic() + timeout
    pause = 0.2
    while True:
        bench.publisher.call("probe", channels=channels)
        status = pool.wait(lambda s: s["probed"] >= streams, pause)
        if status["probed"] >= streams or time.monotonic() > deadline:
            return status
        pause = min(pause * 2, 3.0)


def warm_up(bench: Bench, server: HttpServer, pool: ClientPool, streams: int = 20) -> None:
    """Serve a few streams and events once, then let the server settle."""
    pool.open(["/events/warm-up/"] * streams)
    probe_until(bench, pool, ["warm-up"], streams, timeout=20)
    if not server.delivers_events:
        pool.close()
        return
    pool.target(0, 10)
    bench.publisher.call("publish", channels=["warm-up"], count=10)
    pool.wait(lambda s: s["done"] >= streams, 20)
    pool.close()
    settle(server)


def settle(server: HttpServer, timeout: float = 15.0) -> dict:
    """Wait until the server holds no stream (closed clients noticed); return its stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats = server.stats()
        if stats["streams"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def percentiles(latencies: Any, prefix: str = "") -> dict:
    """p50/p95/p99/max of ``latencies`` (seconds) in milliseconds."""
    if not len(latencies):
        return {
            f"{prefix}p50_ms": None,
            f"{prefix}p95_ms": None,
            f"{prefix}p99_ms": None,
            f"{prefix}max_ms": None,
        }
    ordered = sorted(latencies)
    last = len(ordered) - 1

    def at(fraction: float) -> float:
        return round(ordered[min(last, int(fraction * len(ordered)))] * 1000, 2)

    return {
        f"{prefix}p50_ms": at(0.50),
        f"{prefix}p95_ms": at(0.95),
        f"{prefix}p99_ms": at(0.99),
        f"{prefix}max_ms": round(ordered[-1] * 1000, 2),
    }


@contextlib.contextmanager
def _peak_fds(pid: int, every: float = 0.05) -> Iterator[list[int]]:
    """Sample the open fds of ``pid`` in a thread; yield a one-item list with the peak."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            try:
                peak[0] = max(peak[0], len(os.listdir(f"/proc/{pid}/fd")))
            except OSError:
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


_READS = ("evalsha", "evalsha_ro", "eval", "xrange", "xread")


def redis_commands(bench: Bench, since: dict | None = None) -> dict:
    """Calls per Redis command so far (summed over every master), or since ``since``."""
    calls: dict[str, int] = {}
    for node in bench.redis.masters:
        with node.client() as client:
            stats = client.info("commandstats")
        for name, value in stats.items():
            name = name.removeprefix("cmdstat_")
            calls[name] = calls.get(name, 0) + value["calls"]
    if since is None:
        return calls
    return {
        name: count - since.get(name, 0)
        for name, count in calls.items()
        if count != since.get(name, 0)
    }


def spread_channels(stem: str, count: int) -> list[str]:
    """``count`` channel names; the i-th hashes to a slot of the cluster's master ``i % 3``.

    On the cluster (``RedisClusterProcess``, the slot ranges of
    ``CLUSTER_SLOT_RANGES``) the channels, and so their subscriptions, spread
    over every shard; on one server they are just names.
    """
    from redis.crc import key_slot

    names: list[str] = []
    candidate = 0
    while len(names) < count:
        first, last = CLUSTER_SLOT_RANGES[len(names) % len(CLUSTER_SLOT_RANGES)]
        name = f"{stem}-{candidate}"
        candidate += 1
        if first <= key_slot(f"{{{name}}}".encode()) <= last:  # the hash tag the broker uses
            names.append(name)
    return names


def redis_figures(bench: Bench, pid: int) -> dict:
    """The Redis connections of ``pid``: in all, by kind, and per master (``redis_nodes``)."""
    nodes = redis_nodes(pid, bench.redis)
    subscribers = sum(node["subscribers"] for node in nodes)
    commands = sum(node["commands"] for node in nodes)
    return {
        "redis_connections": subscribers + commands,
        "redis_subscriber_connections": subscribers,
        "redis_command_connections": commands,
        "redis_nodes": nodes,
    }


def _errors(*results: dict) -> dict:
    merged: dict[str, int] = {}
    for result in results:
        for key, count in result.get("errors", {}).items():
            merged[key] = merged.get(key, 0) + count
    return merged


def _us_per(cpu_seconds: float, deliveries: int) -> float | None:
    return round(cpu_seconds / deliveries * 1e6, 2) if deliveries else None


# Scenarios -----------------------------------------------------------------------


def idle(bench: Bench, kind: str, n: int = 1000, hold: float = 2.0) -> dict:
    """Open ``n`` streams on one channel; time until all opened and got a first event; memory."""
    with bench.serving(kind, f"idle-n{n}") as server:
        pid = server.worker_pid
        with bench.clients(server, n) as pool:
            warm_up(bench, server, pool)
            before_stats = server.stats()
            before = server_stats(server)
            commands = redis_commands(bench)
            opened = pool.open(["/events/idle/"] * n, pending=server.open_pending)
            probed = probe_until(bench, pool, ["idle"], n)
            time.sleep(hold)  # held: nothing may drop them meanwhile
            status = pool.status()
            after = server_stats(server)
            commands = redis_commands(bench, commands)
            connections = redis_figures(bench, pid)
            stats = server.stats()
            result = pool.collect(0, 0)
            pool.close()
    first = [t for t in result["first_probe_at"] if t]
    return {
        "n": n,
        "opened": opened["opened"],
        "held": status["open"],
        "probed": probed["probed"],
        "ready_s": round(opened["last_open"] - opened["started"], 3),
        "first_event_s": round(max(first) - opened["started"], 3) if first else None,
        "rss_per_stream_kb": round((after["rss"] - before["rss"]) / n / 1024, 2),
        "worker_rss_mb": round(after["rss"] / 2**20, 1),
        "fds": after["fds"],
        "fds_per_stream": round((after["fds"] - before["fds"]) / n, 3),
        "greenlets": stats["greenlets"],
        "greenlet_stack_kb": round(
            (stats["greenlet_stack_bytes"] - before_stats["greenlet_stack_bytes"]) / n / 1024, 2
        ),
        **connections,
        "redis_reads": sum(commands.get(name, 0) for name in _READS),
        "probes": commands.get("publish", 0) + commands.get("spublish", 0),  # cluster: SPUBLISH
        "worker_cpu_s": round(after["cpu"] - before["cpu"], 2),
        "open_cpu_us": round((after["cpu"] - before["cpu"]) / n * 1e6),
        "gc_s": round(stats["gc_seconds"] - before_stats["gc_seconds"], 3),
        "server_ends": status["server_ends"],
        "errors": _errors(result),
    }


def fanout(
    bench: Bench,
    kind: str,
    n: int = 1000,
    rate: float = 100,
    seconds: float = 2.0,
    burst: int = 2000,
    channels: int = 1,
) -> dict:
    """``n`` subscribers: ``rate``/s for ``seconds``, then a burst of ``burst``.

    One channel, or ``channels`` (``spread_channels()``: one per master of the
    cluster, in turn), the streams dealt out over them; every channel gets
    every event, so each stream receives as many as with one.
    """
    steady = int(rate * seconds)
    total = steady + burst
    names = ["fanout"] if channels == 1 else spread_channels("fanout", channels)
    label = f"fanout-n{n}" if channels == 1 else f"fanout-n{n}-c{channels}"
    with bench.serving(kind, label) as server:
        pid = server.worker_pid
        with bench.clients(server, n) as pool:
            warm_up(bench, server, pool)
            pool.open(
                [f"/events/{names[i % channels]}/" for i in range(n)], pending=server.open_pending
            )
            probe_until(bench, pool, names, n)
            # Steady: paced events, latency without backlog.
            pool.target(0, steady)
            cpu0 = server_stats(server)["cpu"]
            client0, wall0 = pool.status()["cpu"], time.monotonic()
            bench.publisher.call("publish", channels=names, count=steady, rate=rate)
            client1, wall1 = pool.wait(lambda s: s["done"] >= n, WAIT)["cpu"], time.monotonic()
            cpu1 = server_stats(server)["cpu"]
            first = pool.collect(0, steady)
            # Burst: as fast as send_event goes; the worker's CPU per delivery.
            pool.target(steady, total)
            gc_before = server.stats()["gc_seconds"]
            cpu2 = server_stats(server)["cpu"]
            client2, wall2 = pool.status()["cpu"], time.monotonic()
            published = bench.publisher.call("publish", channels=names, count=burst, seq0=steady)
            client3, wall3 = pool.wait(lambda s: s["done"] >= n, WAIT)["cpu"], time.monotonic()
            cpu3 = server_stats(server)["cpu"]
            gc_burst = server.stats()["gc_seconds"] - gc_before
            second = pool.collect(steady, total)
            whole = pool.collect(0, total)
            connections = redis_figures(bench, pid)
            pool.close()
    finished = [t for t in second["done_at"] if t]
    last = max(finished) if len(finished) == n else second["last_at"]
    burst_deliveries = n * burst - second["missing"]
    return {
        "n": n,
        "channels": channels,
        "expected": n * total,
        "delivered": n * total - whole["missing"],
        "lost": whole["missing"],
        "duplicates": whole["duplicates"],
        "reconnects": whole["reconnects"],
        **percentiles(first["latencies"], "steady_"),
        **percentiles(second["latencies"], "burst_"),
        "burst_publish_per_s": round(burst / published["elapsed"], 1),
        "burst_s": round(last - published["started"], 3),
        "deliveries_per_s": round(burst_deliveries / max(1e-9, last - published["started"])),
        "steady_cpu_us_per_delivery": _us_per(cpu1 - cpu0, n * steady),
        "cpu_us_per_delivery": _us_per(cpu3 - cpu2, burst_deliveries),
        "burst_cpu_s": round(cpu3 - cpu2, 2),
        "burst_gc_s": round(gc_burst, 3),
        # Cores the load client kept busy (1.0 = one core): near its process count, the
        # latencies measure the client more than the server.
        "steady_client_cores": round((client1 - client0) / (wall1 - wall0), 2),
        "burst_client_cores": round((client3 - client2) / (wall3 - wall2), 2),
        **connections,
        "errors": _errors(first, second),
    }


def many_channels(bench: Bench, kind: str, n: int = 1000, rounds: int = 5) -> dict:
    """``n`` clients, each on its own channel; one event per channel, ``rounds`` times."""
    names = [f"ch-{i}" for i in range(n)]
    with bench.serving(kind, f"many-channels-n{n}") as server:
        pid = server.worker_pid
        with bench.clients(server, n) as pool:
            warm_up(bench, server, pool)
            pool.open([f"/events/{name}/" for name in names])
            probe_until(bench, pool, names, n)
            cpu0 = worker_stats(pid)["cpu"]
            started = time.monotonic()
            publish_s = 0.0
            for round_ in range(rounds):
                pool.target(0, round_ + 1)
                published = bench.publisher.call("publish", channels=names, count=1, seq0=round_)
                publish_s += published["elapsed"]
                pool.wait(lambda s: s["done"] >= n, WAIT)
            elapsed = time.monotonic() - started
            cpu1 = worker_stats(pid)["cpu"]
            result = pool.collect(0, rounds)
            stats = server.stats()
            connections = redis_connections(pid, bench.redis)
            pool.close()
    return {
        "n": n,
        "rounds": rounds,
        "expected": n * rounds,
        "lost": result["missing"],
        "duplicates": result["duplicates"],
        "reconnects": result["reconnects"],
        **percentiles(result["latencies"]),
        "round_s": round(elapsed / rounds, 3),
        "publish_per_s": round(n * rounds / publish_s, 1) if publish_s else None,
        "cpu_us_per_delivery": _us_per(cpu1 - cpu0, n * rounds - result["missing"]),
        "hub_channels": stats["hub_channels"],
        "redis_connections": connections,
        "errors": _errors(result),
    }


def churn(
    bench: Bench, kind: str, cycles: int = 5000, concurrency: int = 100, rate: float = 50
) -> dict:
    """Connect, read the opening, disconnect (every 10th with RST), ``cycles`` times; leaks."""
    # Half on one busy channel, half on a channel of their own (subscribe/unsubscribe).
    paths = ["/events/churn/" if i % 2 == 0 else f"/events/churn-{i}/" for i in range(cycles)]
    with bench.serving(kind, f"churn-{cycles}") as server:
        pid = server.worker_pid
        with bench.clients(server, min(cycles, 1000)) as pool:
            warm_up(bench, server, pool)
            pool.churn(paths[: max(10, cycles // 20)], concurrency)  # warm-up, not counted
            before_stats = settle(server)
            before = worker_stats(pid)
            before_redis = redis_connections(pid, bench.redis)
            bench.publisher.call("start", channel="churn", rate=rate)
            try:
                with _peak_fds(pid) as peak:
                    result = pool.churn(paths, concurrency)
            finally:
                bench.publisher.call("stop")
        after_stats = settle(server)
        # A stream is unregistered a moment before its socket closes: allow for that.
        deadline = time.monotonic() + 5
        while True:
            after = worker_stats(pid)
            back = (
                after["fds"] <= before["fds"]
                and after_stats["greenlets"] <= before_stats["greenlets"]
            )
            if back or time.monotonic() > deadline:
                break
            time.sleep(0.2)
            after_stats = server.stats()
        after_redis = redis_connections(pid, bench.redis)
    return {
        "cycles": result["cycles"],
        "failed": result["failed"],
        "cycles_per_s": round(result["cycles"] / result["elapsed"], 1),
        "rss_before_mb": round(before["rss"] / 2**20, 1),
        "rss_after_mb": round(after["rss"] / 2**20, 1),
        "rss_growth_kb": round((after["rss"] - before["rss"]) / 1024),
        "fds_before": before["fds"],
        "fds_peak": peak[0],  # streams the server held at once (closed ones not yet noticed)
        "fds_after": after["fds"],
        "greenlets_before": before_stats["greenlets"],
        "greenlets_after": after_stats["greenlets"],
        "objects_before": before_stats["objects"],
        "objects_after": after_stats["objects"],
        "redis_before": before_redis,
        "redis_after": after_redis,
        "streams_after": after_stats["streams"],
        "hub_channels_after": after_stats["hub_channels"],
        "errors": result["errors"],
    }


def replay(
    bench: Bench, kind: str, n: int = 1000, back: int = 100, live: int = 100, rate: float = 200
) -> dict:
    """``n`` clients reconnect ``back`` events behind while ``live`` more are published."""
    with bench.serving(kind, f"replay-n{n}") as server:
        pid = server.worker_pid
        with bench.clients(server, n) as pool:
            warm_up(bench, server, pool)
            history = bench.publisher.call("publish", channels=["replay"], count=back + 1, ids=True)
            last_event_id = history["ids"][0]  # the clients saw seq 0 and nothing after
            total = back + 1 + live
            pool.target(1, back + 1)
            cpu0 = worker_stats(pid)["cpu"]
            bench.publisher.send(
                "publish", channels=["replay"], count=live, seq0=back + 1, rate=rate
            )
            opened = pool.open(["/events/replay/"] * n, [last_event_id] * n)
            pool.wait(lambda s: s["done"] >= n, WAIT)
            caught_up = pool.collect(1, back + 1)
            bench.publisher.result()
            pool.target(1, total)
            pool.wait(lambda s: s["done"] >= n, WAIT)
            cpu1 = worker_stats(pid)["cpu"]
            result = pool.collect(1, total)
            connections = redis_connections(pid, bench.redis)
            pool.close()
    done = [t for t in caught_up["done_at"] if t]
    everything = [t for t in result["done_at"] if t]
    return {
        "n": n,
        "back": back,
        "live": live,
        "opened": opened["opened"],
        "caught_up_s": round(max(done) - opened["started"], 3) if len(done) == n else None,
        "all_s": round(max(everything) - opened["started"], 3) if len(everything) == n else None,
        "expected": n * (total - 1),
        "lost": result["missing"],
        "duplicates": result["duplicates"],
        "extra": result["extra"],
        "reconnects": result["reconnects"],
        "worker_cpu_s": round(cpu1 - cpu0, 2),
        "redis_connections": connections,
        "errors": _errors(result),
    }


def storm(
    bench: Bench,
    kind: str,
    n: int = 1000,
    channels: int = 5,
    rate: float = 20,
    mode: str = "kill",
    before: float = 2.0,
    after: float = 6.0,
) -> dict:
    """``n`` browser-like streams on ``channels`` channels, events at ``rate``/s; the worker dies.

    ``mode`` "kill" SIGKILLs the worker (the master starts another; clients
    come back after the ``retry:`` they last got), "hup" reloads gunicorn
    (old workers end their streams with a spread retry hint). Every client
    resumes with its Last-Event-ID. Reported: seconds from the blow until
    every stream holds every event, the peak of reconnections per second,
    the Redis history reads issued meanwhile, and the new worker's CPU.
    The ceiling is one process with no master: for it, "kill" SIGKILLs it
    and starts it again on the same port at once (it replays with
    ``XRANGE``); "hup" does not apply to it.
    """
    if kind == "ceiling" and mode != "kill":
        return {"skipped": f"the {kind} server has no master to reload"}
    names = [f"storm-{i}" for i in range(channels)]
    total = int(rate * (before + after))
    with bench.serving(kind, f"storm-{mode}-n{n}") as server:
        with bench.clients(server, n) as pool:
            warm_up(bench, server, pool)
            pool.honour_retry(True)
            pool.open(
                [f"/events/{names[i % channels]}/" for i in range(n)], pending=server.open_pending
            )
            probe_until(bench, pool, names, n)
            pool.target(0, total)
            pool.reconnections()  # forget the warm-up's
            bench.publisher.send("publish", channels=names, count=total, rate=rate)
            time.sleep(before)
            commands0 = redis_commands(bench)
            old_worker = server.worker_pid
            blow = time.time()
            if kind == "ceiling":
                server.kill()
                server.start()  # the same port: the clients come back to it
            elif mode == "kill":
                os.kill(old_worker, 9)
            else:
                server.hup()
            status = pool.wait(lambda s: s["done"] >= n, WAIT + after)
            done = time.time()
            published = bench.publisher.result()
            commands = redis_commands(bench, commands0)
            stats = server.stats()
            new_worker = stats["pid"]
            cpu = worker_stats(new_worker)["cpu"]
            reconnects = pool.reconnections()
            result = pool.collect(0, total)
            pool.close()
    per_second: dict[int, int] = {}
    for moment in reconnects:
        tenth = int((moment - blow) * 10)
        per_second[tenth] = per_second.get(tenth, 0) + 1
    return {
        "n": n,
        "channels": channels,
        "mode": mode,
        "events": total,
        "caught_up_s": round(done - blow, 2) if not status["waited_out"] else None,
        # After the last event was published: how far behind the slowest client still was.
        "lag_after_last_event_s": (
            round(done - published["started"] - published["elapsed"], 2)
            if not status["waited_out"]
            else None
        ),
        "reconnects": len(reconnects),
        "reconnect_span_s": round(reconnects[-1] - reconnects[0], 2) if reconnects else 0,
        "peak_reconnects_per_s": max(per_second.values(), default=0) * 10,
        # The new worker's catch-up reads, sent to Redis and served from a shared read.
        "history_reads": stats.get("history_reads"),
        "shared_reads": stats.get("history_reads_shared"),
        "redis_commands": sum(commands.values()),
        "new_worker_cpu_s": round(cpu, 2),
        "worker_replaced": new_worker != old_worker,
        "lost": result["missing"],
        "duplicates": result["duplicates"],
        "errors": _errors(result),
    }


def send_event_cost(bench: Bench, kind: str, seconds: float = 2.0) -> dict:
    """Events/s from one process: ``send_event`` (library) or a bare redis-py publish (ceiling)."""
    bench.flush()
    raw = kind == "ceiling"
    on = bench.publisher.call("cost", seconds=seconds, history=True, raw=raw)
    off = bench.publisher.call("cost", seconds=seconds, history=False, raw=raw)
    return {
        "history_on_per_s": round(on["per_s"]),
        "history_off_per_s": round(off["per_s"]),
        "history_on_us": round(1e6 / on["per_s"], 1),
        "history_off_us": round(1e6 / off["per_s"], 1),
    }


def median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        return values[-1] if values else None
    middle = statistics.median(numbers)
    return round(middle, 3) if isinstance(middle, float) else middle
