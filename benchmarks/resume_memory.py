"""What resuming clients that never read cost a worker: the memory of issue 21's finding 6.

A channel holds 2,000 events of 16 KiB (32 MiB); eight clients resume from
its first id (``Last-Event-ID``), each with a small receive buffer, and then
read nothing. Before ``SSE_STREAM_BUFFER_BYTES`` each stream read the whole
history and joined it into one write; now each reads one batch within the
budget and waits for its client to take it. Printed: the worker's resident
memory before the clients connect, once it has settled with them (no growth
for two seconds), and its peak (``VmHWM``), as one JSON line. Run from the top
of a checkout (the worker imports that checkout's ``django_sse``)::

    python -m benchmarks.resume_memory
    python -m benchmarks.resume_memory --clients 8 --events 2000 --size 16384

To measure another tree (e.g. an older release), copy this file into its
``benchmarks/`` and run it there. The process starts its own redis-server
and the library under gunicorn (``benchmarks.servers.LibraryServer``, one
gevent worker) and stops both by PID.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time

from benchmarks.servers import LibraryServer, RedisProcess
from tests.support.procfs import process_stats

CHANNEL = "resume-memory"


def publish(redis: RedisProcess, events: int, size: int) -> str:
    """Publish ``events`` events of ``size`` bytes of data as ``send_event`` does; return the first id."""
    import django
    from django.conf import settings

    settings.configure(SSE_REDIS_URL=redis.url, SSE_HISTORY_MAXLEN=max(events, 10_000))
    django.setup()
    from django_sse import send_event

    padding = "x" * size
    ids = [send_event("tick", padding, CHANNEL) for _ in range(events)]
    return ids[0]


def open_silent(port: int, last_event_id: str, receive_buffer: int) -> socket.socket:
    """Open a stream that resumes after ``last_event_id`` and will never be read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /events/{CHANNEL}/ HTTP/1.1\r\nHost: bench\r\n"
        f"Accept: text/event-stream\r\nLast-Event-ID: {last_event_id}\r\n\r\n".encode()
    )
    return sock


def vm_hwm(pid: int) -> int:
    """Return the peak resident memory of ``pid`` in bytes (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def settle(pid: int, quiet: float = 2.0, timeout: float = 60.0) -> int:
    """Return the resident memory of ``pid`` once it has not grown for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = process_stats(pid).rss, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        rss = process_stats(pid).rss
        if rss > last + 256 * 1024:
            last, since = rss, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return rss
    return process_stats(pid).rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--size", type=int, default=16 * 1024, help="bytes of data per event")
    parser.add_argument("--receive-buffer", type=int, default=4096)
    args = parser.parse_args(argv)
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as logs:
        redis = RedisProcess(log_dir=logs)
        redis.start()
        server = None
        clients: list[socket.socket] = []
        try:
            first = publish(redis, args.events, args.size)
            server = LibraryServer(redis.url, log_dir=logs)
            server.start()
            pid = server.worker_pid
            server.stats()  # the app is loaded and a request served
            before = process_stats(pid).rss
            clients = [
                open_silent(server.port, first, args.receive_buffer) for _ in range(args.clients)
            ]
            settled = settle(pid)
            figures = {
                "clients": args.clients,
                "events": args.events,
                "event_bytes": args.size,
                "rss_before_mib": round(before / mib, 1),
                "rss_settled_mib": round(settled / mib, 1),
                "rss_peak_mib": round(vm_hwm(pid) / mib, 1),
                "growth_mib": round((settled - before) / mib, 1),
            }
            print(json.dumps(figures))
        finally:
            for sock in clients:
                sock.close()
            if server is not None:
                server.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
