"""What ``SSE_PUBLISH_REPLICAS`` costs per publish: median and p95 latency of ``RedisBroker.publish``.

Starts one master and ``--replicas`` replicas of it (redis-server on free
loopback ports, stopped by PID), then times ``--n`` publishes with history
for each value of ``SSE_PUBLISH_REPLICAS`` given by ``--wait`` (default 0
and 1), one after the other on one connection, as ``send_event`` does::

    python -m benchmarks.publish_replicas
    python -m benchmarks.publish_replicas --n 5000 --replicas 2 --wait 0 --wait 1 --wait 2

Prints one JSON line per value (milliseconds). Absolute figures depend on
the machine; the difference between the lines is the cost of ``WAIT``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from tests.support.polling import eventually
from tests.support.servers import RedisServer


def measure(url: str, wait: int, n: int) -> dict[str, float | int]:
    """Time ``n`` publishes with ``wait`` replicas to confirm; return the figures in ms."""
    from django_sse.brokers.redis.broker import RedisBroker

    broker = RedisBroker(url, prefix="bench:", timeout=5, maxlen=1000, ttl=0, replicas=wait)
    try:
        for _ in range(50):  # warm up: the script loaded, the connection open
            broker.publish("warm", "tick", "x", history=True)
        times = []
        for index in range(n):
            started = time.perf_counter()
            broker.publish("bench", "tick", str(index), history=True)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        broker.close()
    times.sort()
    return {
        "replicas_waited_for": wait,
        "publishes": n,
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 3),
    }


def run(n: int, replicas: int, waits: list[int]) -> list[dict[str, float | int]]:
    """Start the servers, measure each of ``waits``, stop them; return one result per wait."""
    directory = tempfile.mkdtemp(prefix="django-sse-replicas-")
    fast_sync = ["--repl-diskless-sync-delay", "0"]
    master = RedisServer(log_dir=directory, extra_args=fast_sync)
    of_master = ["--replicaof", "127.0.0.1", str(master.port)]  # its port is chosen already
    followers = [
        RedisServer(log_dir=directory, extra_args=[*fast_sync, *of_master]) for _ in range(replicas)
    ]
    started = []
    try:
        for server in (master, *followers):
            started.append(server.start())
        eventually(
            lambda: master.replicas_acknowledge(replicas),
            timeout=30,
            what=f"{replicas} replicas in sync",
        )
        return [measure(master.url, wait, n) for wait in waits]
    finally:
        for server in reversed(started):
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="publishes per value (default 2000)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas to start (default 1)")
    parser.add_argument(
        "--wait", type=int, action="append", help="an SSE_PUBLISH_REPLICAS value (default 0, 1)"
    )
    args = parser.parse_args(argv)
    for result in run(args.n, args.replicas, args.wait or [0, 1]):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
