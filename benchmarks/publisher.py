"""The benchmark publisher: ``send_event`` from its own process, driven over stdin/stdout.

Run by the driver as ``python -m benchmarks.publisher`` with
``DJANGO_SETTINGS_MODULE=benchmarks.settings``, ``BENCH_REDIS_URL`` and
``BENCH_REDIS_CLUSTER`` (``1``: ``SSE_REDIS_CLUSTER = True``); it
reads one JSON command per line and answers with one JSON line. Every
``tick`` carries ``{"t": time.time(), "seq": n}`` so that clients measure
the latency from publish to receipt and find lost or repeated events;
``probe`` events (no history) tell the driver that a stream is live.

Commands: ``publish`` (``count`` events per channel, paced at ``rate`` per
second or as fast as ``send_event`` goes), ``probe``, ``grip`` (publish to a
GRIP proxy too, or no longer), ``start``/``stop`` (a
background tick stream), ``cost`` (events/s of ``send_event``, or of a raw
redis-py publish for comparison), ``exit``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_TOP = Path(__file__).resolve().parent.parent

# The least a publisher must do for history on: append to the stream and announce.
_RAW_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[1], 'data', ARGV[2])
redis.call('PUBLISH', KEYS[1], '1\\n' .. id .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
return id
"""


class _Server:
    """The publisher's side: executes commands with ``send_event``."""

    def __init__(self) -> None:
        import django

        django.setup()
        from django_sse import send_event

        self.send_event = send_event
        self._background: threading.Thread | None = None
        self._stop = threading.Event()
        self._background_sent = 0

    def publish(
        self,
        channels: list[str],
        count: int,
        seq0: int = 0,
        rate: float | None = None,
        history: bool | None = None,
        ids: bool = False,
    ) -> dict:
        send_event = self.send_event
        returned = []
        started = time.time()
        clock = time.monotonic()
        for i in range(count):
            if rate:
                delay = clock + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            seq = seq0 + i
            for channel in channels:
                event_id = send_event(
                    "tick", {"t": time.time(), "seq": seq}, channel, history=history
                )
                if ids:
                    returned.append(event_id)
        elapsed = time.time() - started
        return {
            "sent": count * len(channels),
            "started": started,
            "elapsed": elapsed,
            "ids": returned,
        }

    def grip(self, url: str | None) -> dict:
        """Publish to the GRIP proxy at ``url`` too (``SSE_GRIP_URL``), or no longer (None)."""
        from django.conf import settings

        from django_sse.conf import sse_settings

        settings.SSE_GRIP_URL = url
        sse_settings.forget()
        return {"grip": url}

    def probe(self, channels: list[str]) -> dict:
        for channel in channels:
            self.send_event("probe", {"t": time.time(), "seq": -1}, channel, history=False)
        return {"sent": len(channels)}

    def start(self, channel: str, rate: float, seq0: int = 0) -> dict:
        """Publish ticks on ``channel`` at ``rate`` per second until ``stop``."""
        self._stop.clear()
        self._background_sent = 0

        def run() -> None:
            clock = time.monotonic()
            while not self._stop.is_set():
                delay = clock + self._background_sent / rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                seq = seq0 + self._background_sent
                self.send_event("tick", {"t": time.time(), "seq": seq}, channel)
                self._background_sent += 1

        self._background = threading.Thread(target=run, daemon=True)
        self._background.start()
        return {"started": True}

    def stop(self) -> dict:
        self._stop.set()
        if self._background is not None:
            self._background.join(10)
            self._background = None
        return {"sent": self._background_sent}

    def cost(self, seconds: float, history: bool, raw: bool = False, channel: str = "cost") -> dict:
        """Publish as fast as one process can for ``seconds``; return events per second."""
        if raw:
            publish = self._raw_publisher(channel, history)
        else:
            send_event = self.send_event

            def publish(payload: dict) -> None:
                send_event("tick", payload, channel, history=history)

        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        now = started
        while now < deadline:
            for _ in range(50):
                publish({"t": time.time(), "seq": count})
                count += 1
            now = time.perf_counter()
        elapsed = now - started
        return {"events": count, "elapsed": elapsed, "per_s": count / elapsed}

    def _raw_publisher(self, channel: str, history: bool):  # type: ignore[no-untyped-def]
        """A redis-py publisher without django-sse: the floor of what publishing costs."""
        import redis
        from django.conf import settings

        client = redis.Redis.from_url(settings.SSE_REDIS_URL)
        key = "sse:" + channel
        if history:
            script = client.register_script(_RAW_SCRIPT)

            def publish(payload: dict) -> None:
                script(keys=[key], args=["tick", json.dumps(payload, separators=(",", ":")), 10000])

        else:

            def publish(payload: dict) -> None:
                client.publish(
                    key, b"1\n\ntick\n" + json.dumps(payload, separators=(",", ":")).encode()
                )

        return publish


def main() -> None:
    server = _Server()
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "exit":
            server.stop()
            print(json.dumps({"exited": True}), flush=True)
            return
        try:
            reply = getattr(server, op)(**command)
        except Exception as exc:  # reported to the driver, which raises it
            reply = {"exception": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


class PublisherError(RuntimeError):
    """The publisher process failed a command or died."""


class Publisher:
    """The driver's handle on a publisher process; ``call()`` or ``send()`` + ``result()``."""

    def __init__(self, redis_env: dict[str, str], log_path: str | Path | None = None) -> None:
        """Start the process; ``redis_env`` is ``servers.redis_env()`` of the Redis to publish to."""
        env = {
            **os.environ,
            **redis_env,
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(log_path or os.devnull, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.publisher"],
            cwd=REPO_TOP,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self._pending = 0
        ready = self._read()
        self.pid = ready["pid"]

    def send(self, op: str, **arguments: Any) -> None:
        """Send a command without waiting for its answer (read it with ``result()``)."""
        self.process.stdin.write((json.dumps({"op": op, **arguments}) + "\n").encode())
        self.process.stdin.flush()
        self._pending += 1

    def result(self) -> dict:
        """Wait for the answer to the oldest command sent."""
        self._pending -= 1
        reply = self._read()
        if "exception" in reply:
            raise PublisherError(reply["exception"])
        return reply

    def call(self, op: str, **arguments: Any) -> dict:
        self.send(op, **arguments)
        return self.result()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait(5)
            raise PublisherError(f"The publisher exited with {code}; see its log.")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                while self._pending > 0:
                    self.result()
                self.call("exit")
                self.process.wait(10)
            except (OSError, PublisherError, subprocess.TimeoutExpired, ValueError):
                self.process.kill()
                self.process.wait(5)
        self._log.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


if __name__ == "__main__":
    main()
