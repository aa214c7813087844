"""What one live message costs to receive: the library's subscriber beside redis-py's PubSub object.

    python -m benchmarks.subscriber                  # 20,000 messages, medians of 5 rounds
    python -m benchmarks.subscriber --messages 2000 --rounds 3

Each round publishes a burst of the fan-out scenario's messages (pipelined,
from a thread, before reading starts) and then reads them all on one
subscriber connection, counting the reading thread's CPU time: once through
``django_sse.brokers.redis.subscriber.SubscriberConnection`` (what single-node
and Sentinel deployments use: a redis-py connection read in batches) and once
through redis-py's ``PubSub.get_message`` (what the cluster broker uses, one
per shard). Both include turning the reply into the
library's ``Message``. The figure that decides between them is the
difference per message divided by the deliveries each message makes in the
fan-out burst (``--subscribers``, 1,000 there), as a share of that
scenario's worker CPU per delivery (``--per-delivery-us``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import redis

from django_sse.brokers.base import Message
from django_sse.brokers.redis.subscriber import SubscriberConnection

from .scenarios import median
from .servers import RedisProcess

CHANNEL = "sse:fanout"
PAYLOAD = b'1\n1764600000000-0\ntick\n{"t": 1764600000.123456, "seq": 123456}'


def _publish_burst(port: int, count: int) -> None:
    client = redis.Redis(port=port)
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            pipe.publish(CHANNEL, PAYLOAD)
        pipe.execute()
    finally:
        client.close()


def _message(channel: bytes, payload: bytes) -> Message:
    _, event_id, event, data = payload.split(b"\n", 3)
    return Message(channel.decode()[4:], event.decode(), data.decode(), None, event_id.decode())


def _library_round(port: int, count: int) -> float:
    """CPU seconds to read ``count`` messages through the library's subscriber."""
    pool = redis.ConnectionPool(port=port, max_connections=1, protocol=2)
    connection = SubscriberConnection(pool, idle_ping=30.0)
    connection.connect()
    try:
        connection.send("SUBSCRIBE", CHANNEL)
        replies = connection.replies()
        next(replies)  # the subscription's confirmation
        _publish_burst(port, count)
        started, received = time.thread_time(), 0
        while received < count:
            reply = next(replies)
            if reply[0] == b"message":
                _message(reply[1], reply[2])
                received += 1
        return time.thread_time() - started
    finally:
        connection.close()


def _redis_py_round(port: int, count: int) -> float:
    """CPU seconds to read ``count`` messages through redis-py's ``PubSub``."""
    client = redis.Redis(port=port)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(CHANNEL)
        while pubsub.get_message(timeout=5.0) is None:
            pass  # the subscription's confirmation
        _publish_burst(port, count)
        started, received = time.thread_time(), 0
        while received < count:
            reply = pubsub.get_message(timeout=5.0)
            if reply is not None and reply["type"] == "message":
                _message(reply["channel"], reply["data"])
                received += 1
        return time.thread_time() - started
    finally:
        pubsub.close()
        client.close()


def _in_own_thread(run_round: Callable[[int, int], float], port: int, count: int) -> float:
    """Run one round in a thread of its own, so that its ``thread_time()`` counts nothing else."""
    result: list[float] = []
    reader = threading.Thread(target=lambda: result.append(run_round(port, count)))
    reader.start()
    reader.join()
    return result[0]


def measure(messages: int, rounds: int, subscribers: int, per_delivery_us: float) -> dict:
    """Run the rounds on a fresh redis-server; return the medians and the share of a delivery."""
    paths: dict[str, Callable[[int, int], float]] = {
        "library": _library_round,
        "redis_py": _redis_py_round,
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as log_dir, RedisProcess(log_dir=log_dir) as server:
        for _ in range(rounds):
            for name, run_round in paths.items():
                seconds = _in_own_thread(run_round, server.port, messages)
                samples[name].append(seconds / messages * 1e6)
    library_us, redis_py_us = median(samples["library"]), median(samples["redis_py"])
    extra_per_delivery = (redis_py_us - library_us) / subscribers
    return {
        "messages": messages,
        "rounds": rounds,
        "library_us_per_message": round(library_us, 2),
        "redis_py_us_per_message": round(redis_py_us, 2),
        "extra_us_per_message": round(redis_py_us - library_us, 2),
        "subscribers": subscribers,
        "per_delivery_us": per_delivery_us,
        "extra_share_of_delivery": round(extra_per_delivery / per_delivery_us, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--per-delivery-us", type=float, default=0.99)
    args = parser.parse_args(argv)
    result = measure(args.messages, args.rounds, args.subscribers, args.per_delivery_us)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
