"""A load client for event streams: thousands of SSE connections on raw asyncio protocols.

No HTTP library: each stream is an ``asyncio.Protocol`` that sends a GET,
checks the status and content type, decodes the chunked body and the SSE
frames incrementally, and records for every ``tick`` event the latency from
publish to receipt (the publisher puts ``{"t": time.time(), "seq": n}`` in
the data, JSON as ``send_event`` encodes it) and which ``seq`` arrived how often (loss and duplicates). A
stream the server ends reconnects with ``Last-Event-ID``, as a browser would.

One process saturates long before a server does, so ``ClientPool`` runs
several worker processes, each with its own event loop, sends them commands
over pipes and merges their answers::

    with ClientPool(port, processes=2) as pool:
        pool.open(["/events/news/"] * 1000)
        pool.wait(lambda s: s["probed"] == 1000, timeout=10)
        result = pool.collect(0, 100)
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import resource
import socket
import struct
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any

HOST = "127.0.0.1"
_OPEN_TIMEOUT = 60.0
_RECONNECT_DELAY = 0.05
_MAX_RECONNECTS = 50
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

# What send_event makes of the publisher's {"t": time.time(), "seq": n}.
_TICK = re.compile(rb'event: tick\ndata: \{"t":([0-9.e+-]+),"seq":(\d+)\}\n')

# Stream states.
_HEAD, _CHUNKED, _IDENTITY, _DONE = range(4)


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Stream(asyncio.Protocol):
    """One logical event stream; the same object serves its reconnections."""

    def __init__(self, client: Client, path: str, last_event_id: str | None) -> None:
        self.client = client
        self.path = path
        self.last_id: bytes | None = last_event_id.encode() if last_event_id else None
        self.transport: asyncio.Transport | None = None
        self.state = _HEAD
        self.raw = b""  # received, not yet decoded (headers, a partial chunk-size line)
        self.remaining = 0  # data bytes left in the current chunk
        self.skip = 0  # CRLF bytes left after the current chunk
        self.text = b""  # decoded body after the last complete SSE frame
        self.opened = False  # headers and the first body bytes arrived (this connection)
        self.ever_opened = False
        self.opened_at = 0.0
        self.first_probe_at = 0.0
        self.probes = 0
        self.events = 0  # tick events received
        self.seqs = bytearray()  # seq -> times received (saturates at 255)
        self.in_target = 0  # distinct seqs received inside the client's target range
        self.done_at = 0.0  # when in_target reached the target size
        self.last_at = 0.0  # when the last tick arrived
        self.connections = 0
        self.reconnects = 0
        self.server_ends = 0  # the server ended the response (overflow, shutdown)
        self.error: str | None = None
        self.closing = False  # we are closing it: do not reconnect
        self.retry_ms = 0
        self.waiter: asyncio.Future | None = None

    # Connection ------------------------------------------------------------

    def request(self) -> bytes:
        headers = f"GET {self.path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n"
        if self.last_id:
            headers += f"Last-Event-ID: {self.last_id.decode()}\r\n"
        return (headers + "\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state = _HEAD
        self.raw = self.text = b""
        self.remaining = self.skip = 0
        self.opened = False
        self.connections += 1
        transport.write(self.request())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        was_open = self.opened
        self.opened = False
        if was_open:
            self.client.open_count -= 1
        if not was_open and self.error is None:
            self.error = f"closed before the stream opened ({exc or 'EOF'})"
        self._settle()
        if self.state != _DONE and was_open and not self.closing:
            self.server_ends += 1  # the connection dropped mid-stream
        self.client.stream_closed(self)

    def _settle(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.opened)

    def fail(self, reason: str) -> None:
        self.error = reason
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def close(self, reset: bool = False) -> None:
        """Close the connection: FIN, or RST when ``reset``; never reconnect."""
        self.closing = True
        transport = self.transport
        if transport is None:
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                except OSError:
                    pass
            transport.abort()
        else:
            transport.close()

    # Decoding ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _HEAD:
            raw = self.raw + data
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                if len(raw) > 65536:
                    self.fail("response headers over 64 KiB")
                self.raw = raw
                return
            self.raw = b""
            if not self._check_head(raw[:end]):
                return
            data = raw[end + 4 :]
            state = self.state
            if not data:
                return
        if state == _CHUNKED:
            self._dechunk(data)
        elif state == _IDENTITY:
            self._body(data)

    def _check_head(self, head: bytes) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 200:
            self.fail(f"status {status}")
            return False
        content_type = headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            self.fail(f"content type {content_type!r}")
            return False
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self.state = _CHUNKED if chunked else _IDENTITY
        return True

    def _dechunk(self, data: bytes) -> None:
        raw = self.raw + data if self.raw else data
        position, size = 0, len(raw)
        pieces = []
        ended = False
        while position < size:
            if self.remaining:
                take = min(self.remaining, size - position)
                pieces.append(raw[position : position + take])
                position += take
                self.remaining -= take
            elif self.skip:
                take = min(self.skip, size - position)
                position += take
                self.skip -= take
            else:
                eol = raw.find(b"\r\n", position)
                if eol < 0:
                    break
                length = int(raw[position:eol].split(b";", 1)[0], 16)
                position = eol + 2
                if length == 0:
                    ended = True
                    break
                self.remaining, self.skip = length, 2
        self.raw = b"" if ended else raw[position:]
        if pieces:
            self._body(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if ended:
            self.state = _DONE
            self.server_ends += 1
            if self.transport is not None:
                self.transport.close()

    def _body(self, data: bytes) -> None:
        if not self.opened:
            self.opened = self.ever_opened = True
            self.error = None
            self.opened_at = time.time()
            self.client.open_count += 1
            self._settle()
        text = self.text + data if self.text else data
        end = text.rfind(b"\n\n")
        if end < 0:
            self.text = text
            return
        self.text = text[end + 2 :]
        block = text[: end + 1]  # complete frames; every line ends with LF
        now = time.time()
        # Fast path, for what both servers send: "[id: ..\n]event: tick\ndata: {..}\n",
        # probes, comments. Anything else (or a miscount) goes through the general parser.
        ticks = _TICK.findall(block)
        probes = block.count(b"event: probe\n")
        if len(ticks) + probes != block.count(b"data:"):
            self._frames(block[:-1], now)
            return
        position = block.rfind(b"id:")
        while position > 0 and block[position - 1] != 10:  # not at a line start
            position = block.rfind(b"id:", 0, position)
        if position >= 0:
            value = block[position + 3 : block.index(b"\n", position)]
            self.last_id = (value[1:] if value[:1] == b" " else value) or None
        if ticks:
            self._ticks([(float(sent), int(seq)) for sent, seq in ticks], now)
        if probes:
            self._probes(probes, now)

    def _frames(self, block: bytes, now: float) -> None:
        """Parse SSE frames in general (any field order, multi-line data, no space)."""
        ticks = []
        probes = 0
        for frame in block.split(b"\n\n"):
            event = b"message"
            data = None
            for line in frame.split(b"\n"):
                if not line or line[0] == 58:  # comment
                    continue
                field, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if field == b"data":
                    data = value if data is None else data + b"\n" + value
                elif field == b"id":
                    self.last_id = value or None
                elif field == b"event":
                    event = value
                elif field == b"retry" and value.isdigit():
                    self.retry_ms = int(value)
            if data is None:
                continue
            if event == b"tick":
                payload = json.loads(data)
                ticks.append((payload["t"], payload["seq"]))
            elif event == b"probe":
                probes += 1
        if ticks:
            self._ticks(ticks, now)
        if probes:
            self._probes(probes, now)

    def _ticks(self, ticks: list[tuple[float, int]], now: float) -> None:
        client = self.client
        latencies = client.latencies
        seqs = self.seqs
        lo, hi = client.lo, client.hi
        for sent, seq in ticks:
            latencies.append(now - sent)
            if seq >= len(seqs):
                seqs.extend(bytes(seq + 1 - len(seqs) + 256))
            count = seqs[seq]
            if count < 255:
                seqs[seq] = count + 1
            if count == 0 and lo <= seq < hi:
                self.in_target += 1
                if self.in_target == hi - lo:
                    self.done_at = now
                    client.done += 1
        self.events += len(ticks)
        self.last_at = now

    def _probes(self, count: int, now: float) -> None:
        if not self.probes:
            self.first_probe_at = now
            self.client.probed += 1
        self.probes += count


class Client:
    """The streams of one process, on one event loop."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.port = port
        self.streams: list[Stream] = []
        self.latencies = array("d")
        self.lo = self.hi = 0  # the target range of seqs
        self.done = 0  # streams that hold every seq of the target range
        self.probed = 0  # streams that received a probe
        self.open_count = 0
        self.reconnect = True
        #: Reconnect after the stream's ``retry:`` (as a browser does), not at once.
        self.honour_retry = False
        #: When each reconnection started (time.time()), for the storm's connects per second.
        self.reconnected_at = array("d")
        self.errors: dict[str, int] = {}

    async def connect(self, stream: Stream) -> bool:
        """Connect ``stream`` and wait for its first body bytes; return whether they came."""
        stream.waiter = self.loop.create_future()
        waiter = stream.waiter
        try:
            await self.loop.create_connection(lambda: stream, HOST, self.port)
        except OSError as exc:
            stream.error = f"connect: {exc.strerror or exc}"
            stream.waiter = None
            return False
        return await waiter

    def stream_closed(self, stream: Stream) -> None:
        if stream.closing or not self.reconnect or not stream.ever_opened:
            return
        if stream.reconnects >= _MAX_RECONNECTS:
            stream.error = "too many reconnections"
            return
        stream.reconnects += 1
        delay = _RECONNECT_DELAY
        if self.honour_retry and stream.retry_ms:
            delay = stream.retry_ms / 1000
        self.loop.call_later(delay, lambda: self.loop.create_task(self._again(stream)))

    async def _again(self, stream: Stream) -> None:
        if stream.closing:
            return
        self.reconnected_at.append(time.time())
        if not await self.connect(stream) and not stream.closing:
            self.stream_closed(stream)

    # Commands ------------------------------------------------------------------

    async def open(self, specs: list[tuple[str, str | None]], pending: int, timeout: float) -> dict:
        """Open a stream per (path, last_event_id), at most ``pending`` connecting at once."""
        started = time.time()
        gate = asyncio.Semaphore(max(1, pending))
        new = [Stream(self, path, last_id) for path, last_id in specs]
        self.streams.extend(new)

        async def one(stream: Stream) -> bool:
            async with gate:
                return await self.connect(stream)

        tasks = [self.loop.create_task(one(stream)) for stream in new]
        done, not_done = await asyncio.wait(tasks, timeout=timeout) if tasks else (set(), set())
        for task in not_done:
            task.cancel()
        opened = sum(1 for task in done if not task.cancelled() and task.result())
        for stream in new:
            if not stream.ever_opened:
                key = stream.error or "timed out"
                self.errors[key] = self.errors.get(key, 0) + 1
        last = max((stream.opened_at for stream in new if stream.ever_opened), default=started)
        return {"requested": len(new), "opened": opened, "started": started, "last_open": last}

    def set_honour_retry(self, honour: bool) -> dict:
        """Reconnect after each stream's ``retry:`` (True) or at once (False)."""
        self.honour_retry = honour
        return {"honour_retry": honour}

    def reconnections(self) -> dict:
        """When each reconnection started (time.time()), as bytes of doubles; then forget them."""
        times, self.reconnected_at = self.reconnected_at, array("d")
        return {"times": times.tobytes()}

    def target(self, lo: int, hi: int) -> dict:
        """Count, per stream, the seqs of [lo, hi) it holds; a stream is done when it holds all."""
        self.lo, self.hi = lo, hi
        self.done = 0
        for stream in self.streams:
            window = stream.seqs[lo:hi]
            stream.in_target = len(window) - window.count(0)
            stream.done_at = 0.0
            if hi > lo and stream.in_target == hi - lo:
                stream.done_at = stream.last_at
                self.done += 1
        return self.status()

    def status(self) -> dict:
        return {
            "streams": len(self.streams),
            "open": self.open_count,
            "done": self.done,
            "probed": self.probed,
            "events": sum(stream.events for stream in self.streams),
            "reconnects": sum(stream.reconnects for stream in self.streams),
            "server_ends": sum(stream.server_ends for stream in self.streams),
            "cpu": time.process_time(),  # this client process's CPU seconds so far
        }

    def collect(self, lo: int, hi: int, reset_latencies: bool) -> dict:
        """Return loss, duplicates and timings over [lo, hi), and the latencies so far."""
        missing = duplicates = extra = 0
        size = hi - lo
        for stream in self.streams:
            window = stream.seqs[lo:hi]
            missing += size - (len(window) - window.count(0))
            duplicates += sum(count - 1 for count in window if count > 1)
            extra += sum(stream.seqs[:lo]) + sum(stream.seqs[hi:])
        errors = dict(self.errors)
        for stream in self.streams:
            if stream.error and stream.ever_opened:
                errors[stream.error] = errors.get(stream.error, 0) + 1
        result = {
            **self.status(),
            "missing": missing,
            "duplicates": duplicates,
            "extra": extra,
            "errors": errors,
            "done_at": [stream.done_at for stream in self.streams],
            "first_probe_at": [stream.first_probe_at for stream in self.streams],
            "last_at": max((stream.last_at for stream in self.streams), default=0.0),
            "latencies": self.latencies.tobytes(),
        }
        if reset_latencies:
            self.latencies = array("d")
        return result

    async def close(self, reset: bool = False) -> dict:
        """Close every stream (FIN, or RST) and forget them."""
        streams, self.streams = self.streams, []
        for stream in streams:
            stream.close(reset)
        deadline = time.monotonic() + 10
        while any(stream.transport is not None for stream in streams):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        self.latencies = array("d")
        self.lo = self.hi = self.done = self.probed = self.open_count = 0
        self.errors = {}
        return {"closed": len(streams)}

    async def churn(self, paths: list[str], concurrency: int, timeout: float) -> dict:
        """Open each path, wait for the stream to open, close it (every 10th with RST)."""
        started = time.monotonic()
        gate = asyncio.Semaphore(max(1, concurrency))
        failures: dict[str, int] = {}

        async def cycle(index: int, path: str) -> bool:
            async with gate:
                stream = Stream(self, path, None)
                stream.closing = True  # never reconnect
                try:
                    opened = await asyncio.wait_for(self.connect(stream), 10)
                except asyncio.TimeoutError:
                    opened = False
                    stream.error = "timed out"
                if not opened:
                    key = stream.error or "failed"
                    failures[key] = failures.get(key, 0) + 1
                stream.close(reset=index % 10 == 9)
                return opened

        tasks = [self.loop.create_task(cycle(i, path)) for i, path in enumerate(paths)]
        done, not_done = await asyncio.wait(tasks, timeout=timeout) if tasks else (set(), set())
        for task in not_done:
            task.cancel()
        ok = sum(1 for task in done if not task.cancelled() and task.result())
        await asyncio.sleep(0.05)  # let the last closes go out
        return {
            "cycles": ok,
            "failed": len(paths) - ok,
            "errors": failures,
            "elapsed": time.monotonic() - started,
        }


async def _serve(conn: Any, port: int) -> None:
    loop = asyncio.get_running_loop()
    client = Client(port)
    commands: asyncio.Queue = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except EOFError:
            commands.put_nowait(("exit",))
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), readable)
    while True:
        name, *args = await commands.get()
        if name == "exit":
            await client.close(reset=True)
            conn.send({"exited": True})
            return
        try:
            method = getattr(client, name)
            result = method(*args)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as exc:  # reported to the driver, which raises it
            result = {"exception": f"{type(exc).__name__}: {exc}"}
        conn.send(result)


def _worker(conn: Any, port: int) -> None:
    raise_fd_limit()
    asyncio.run(_serve(conn, port))


class ClientError(RuntimeError):
    """A client process failed a command."""


class ClientPool:
    """Client processes that share the streams of a scenario; answers are merged."""

    def __init__(self, port: int, processes: int = 1) -> None:
        raise_fd_limit()
        context = multiprocessing.get_context("spawn")
        self.port = port
        self.workers = []
        for _ in range(max(1, processes)):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, port), daemon=True)
            process.start()
            child.close()
            self.workers.append((process, parent))

    def _all(self, commands: Iterable[tuple]) -> list[dict]:
        commands = list(commands)
        for (_, conn), command in zip(self.workers, commands, strict=True):
            conn.send(command)
        replies = [conn.recv() for (_, conn), _ in zip(self.workers, commands, strict=True)]
        for reply in replies:
            if "exception" in reply:
                raise ClientError(reply["exception"])
        return replies

    def _same(self, *command: Any) -> list[dict]:
        return self._all([command] * len(self.workers))

    def open(
        self,
        paths: list[str],
        last_event_ids: list[str | None] | None = None,
        pending: int = 1000,
        timeout: float = _OPEN_TIMEOUT,
    ) -> dict:
        """Open one stream per path, spread over the processes; return counts and times."""
        ids = last_event_ids or [None] * len(paths)
        count = len(self.workers)
        shares = [list(zip(paths[i::count], ids[i::count], strict=True)) for i in range(count)]
        per_process = max(1, pending // count)
        replies = self._all(("open", share, per_process, timeout) for share in shares)
        return {
            "requested": sum(r["requested"] for r in replies),
            "opened": sum(r["opened"] for r in replies),
            "started": min(r["started"] for r in replies),
            "last_open": max(r["last_open"] for r in replies),
        }

    def target(self, lo: int, hi: int) -> dict:
        return _sum(self._same("target", lo, hi))

    def status(self) -> dict:
        return _sum(self._same("status"))

    def wait(self, condition: Callable[[dict], bool], timeout: float, poll: float = 0.05) -> dict:
        """Poll the merged status until ``condition(status)`` holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if condition(status) or time.monotonic() >= deadline:
                status["waited_out"] = not condition(status)
                return status
            time.sleep(poll)

    def collect(self, lo: int, hi: int, reset_latencies: bool = True) -> dict:
        """Loss, duplicates, per-stream times and every latency (seconds) over [lo, hi)."""
        replies = self._same("collect", lo, hi, reset_latencies)
        latencies = array("d")
        for reply in replies:
            latencies.frombytes(reply.pop("latencies"))
        merged = _sum(replies)
        merged["latencies"] = latencies
        return merged

    def close(self, reset: bool = False) -> dict:
        return _sum(self._same("close", reset))

    def honour_retry(self, honour: bool = True) -> None:
        """Have every stream reconnect after its ``retry:``, as a browser does."""
        self._same("set_honour_retry", honour)

    def reconnections(self) -> list[float]:
        """When each reconnection started (time.time()), over every process, sorted."""
        times = array("d")
        for reply in self._same("reconnections"):
            times.frombytes(reply["times"])
        return sorted(times)

    def churn(self, paths: list[str], concurrency: int = 100, timeout: float = 300) -> dict:
        count = len(self.workers)
        per_process = max(1, concurrency // count)
        replies = self._all(("churn", paths[i::count], per_process, timeout) for i in range(count))
        merged = _sum(replies)
        merged["elapsed"] = max(r["elapsed"] for r in replies)
        return merged

    def shutdown(self) -> None:
        for _, conn in self.workers:
            try:
                conn.send(("exit",))
                conn.recv()
            except (OSError, EOFError):
                pass
        for process, conn in self.workers:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
            conn.close()
        self.workers = []

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()


def _sum(replies: list[dict]) -> dict:
    """Merge the answers of several processes: add numbers, concatenate lists, add dicts."""
    merged: dict = {}
    for reply in replies:
        for key, value in reply.items():
            if key not in merged:
                merged[key] = (
                    list(value)
                    if isinstance(value, list)
                    else (dict(value) if isinstance(value, dict) else value)
                )
            elif isinstance(value, bool):
                merged[key] = merged[key] or value
            elif isinstance(value, (int, float)):
                if key == "last_at":
                    merged[key] = max(merged[key], value)
                else:
                    merged[key] += value
            elif isinstance(value, list):
                merged[key].extend(value)
            elif isinstance(value, dict):
                for name, count in value.items():
                    merged[key][name] = merged[key].get(name, 0) + count
    return merged
