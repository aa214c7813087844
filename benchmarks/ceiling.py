"""The ceiling: the least a gevent server must do to serve the same streams.

A ``StreamServer`` answers ``GET /events/<channel>/`` with the SSE headers
and an opening chunk, then only waits for the client to close. One Redis
pub/sub connection serves every channel; each batch of messages read from it
is encoded once per channel (one HTTP chunk) and written to every socket of
the channel with a non-blocking send; a socket that cannot take it all gets
a writer greenlet for the rest. A request with ``Last-Event-ID`` is replayed
from the channel's Redis stream (``XRANGE``) before it goes live, without
duplicates. ``GET /stats/`` reports what the process holds.

It reads what ``send_event`` writes (wire format 1: pub/sub channel
``sse:<channel>``, payload ``1\\n<id>\\n<event>\\n<data>``; history in the
stream ``sse:<channel>``), so one publisher drives both servers. No Django,
no WSGI, no per-stream queue: a bound on what the library can reach, not a
server to deploy (no heartbeat per stream, no limits, no auth, no CORS).

Run: ``python -m benchmarks.ceiling --port 8001 --redis-url redis://127.0.0.1:6379/0``.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from benchmarks import introspect  # noqa: E402

PREFIX = b"sse:"
HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
OPENING = b"retry: 2000\n\n:\n\n"
HEARTBEAT_INTERVAL = 15.0


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def frame(event_id: bytes, event: bytes, data: bytes) -> bytes:
    """Encode one event (data lines split on LF; the publisher sends no CR)."""
    head = b"id: %s\n" % event_id if event_id else b""
    return b"%sevent: %s\ndata: %s\n\n" % (head, event, data.replace(b"\n", b"\ndata: "))


def position(event_id: bytes) -> tuple[int, int]:
    ms, _, seq = event_id.partition(b"-")
    return int(ms), int(seq or 0)


class Client:
    """One open stream: a socket, and what waits to be written to it."""

    __slots__ = ("sock", "raw", "pending", "replaying", "buffer", "after", "closed")

    def __init__(self, sock: socket.socket, replaying: bool) -> None:
        self.sock = sock
        self.raw = sock._sock  # the OS socket (non-blocking): send() never switches
        self.pending: list[bytes] | None = None  # set while a writer greenlet drains
        self.replaying = replaying
        self.buffer: list[tuple[bytes, bytes]] = []  # live (id, frame) while replaying
        # After a replay: the last position sent; live events up to it were sent already.
        self.after: tuple[int, int] | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.pending is not None:
            self.pending.append(data)
            return
        try:
            sent = self.raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.pending = [data[sent:]]
            gevent.spawn(self._drain)

    def write_after(self, items: list[tuple[bytes, bytes]]) -> None:
        """Write the live events that the replay did not send already."""
        after = self.after
        frames = [f for event_id, f in items if not event_id or position(event_id) > after]
        if frames:
            self.after = None  # ids only grow: from here on everything is new
            self.write(chunk(b"".join(frames)))

    def _drain(self) -> None:
        try:
            while self.pending:
                data = b"".join(self.pending)
                self.pending = []
                self.sock.sendall(data)
        except OSError:
            self.close()
        self.pending = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()  # wakes the handler, blocked in recv(), which detaches


class Channel:
    __slots__ = ("clients", "ready")

    def __init__(self) -> None:
        self.clients: dict[Client, None] = {}
        self.ready = Event()


class RespParser:
    """Just enough RESP2 for pub/sub pushes: arrays of bulk strings and integers."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list:
        buffer = self.buffer + data if self.buffer else data
        replies = []
        position = 0
        while True:
            parsed = self._parse(buffer, position)
            if parsed is None:
                break
            reply, position = parsed
            replies.append(reply)
        self.buffer = buffer[position:]
        return replies

    def _parse(self, buffer: bytes, position: int):  # type: ignore[no-untyped-def]
        end = buffer.find(b"\r\n", position)
        if end < 0:
            return None
        kind = buffer[position]
        line = buffer[position + 1 : end]
        position = end + 2
        if kind == 0x2A:  # * array
            items = []
            for _ in range(int(line)):
                parsed = self._parse(buffer, position)
                if parsed is None:
                    return None
                item, position = parsed
                items.append(item)
            return items, position
        if kind == 0x24:  # $ bulk string
            length = int(line)
            if length < 0:
                return None, position
            if len(buffer) < position + length + 2:
                return None
            return buffer[position : position + length], position + length + 2
        if kind == 0x3A:  # : integer
            return int(line), position
        if kind == 0x2D:  # - error
            raise RuntimeError(line.decode(errors="replace"))
        return line, position  # + simple string


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class CeilingServer:
    def __init__(self, port: int, redis_url: str) -> None:
        import redis

        url = urlsplit(redis_url)
        self.redis_address = (url.hostname or "127.0.0.1", url.port or 6379)
        self.port = port
        self.channels: dict[str, Channel] = {}
        self.pending: dict[str, int] = {}  # SUBSCRIBE commands not yet confirmed
        self.pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1)
        self.redis = redis.Redis(connection_pool=self.pool)
        self.subscriber = socket.create_connection(self.redis_address)
        self.subscriber.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server = StreamServer(("127.0.0.1", port), self.handle, backlog=4096)

    def serve_forever(self) -> None:
        gevent.spawn(self.listen)
        gevent.spawn(self.heartbeat)
        self.server.serve_forever()

    # Redis -------------------------------------------------------------------

    def subscribe(self, name: str) -> None:
        self.pending[name] = self.pending.get(name, 0) + 1
        self.subscriber.sendall(command(b"SUBSCRIBE", PREFIX + name.encode()))

    def listen(self) -> None:
        parser = RespParser()
        skip = len(PREFIX)
        while True:
            data = self.subscriber.recv(262144)
            if not data:
                print("ceiling: Redis closed the subscriber connection.", flush=True)
                os._exit(1)
            batch: dict[bytes, list[tuple[bytes, bytes]]] = {}
            for reply in parser.feed(data):
                kind = reply[0]
                if kind == b"message":
                    parts = reply[2].split(b"\n", 3)
                    if len(parts) == 4 and parts[0] == b"1":
                        items = batch.get(reply[1])
                        if items is None:
                            items = batch[reply[1]] = []
                        items.append((parts[1], frame(parts[1], parts[2], parts[3])))
                elif kind == b"subscribe":
                    name = reply[1][skip:].decode()
                    left = self.pending.get(name, 0) - 1
                    if left > 0:
                        self.pending[name] = left
                        continue
                    self.pending.pop(name, None)
                    channel = self.channels.get(name)
                    if channel is not None:
                        channel.ready.set()
            for key, items in batch.items():
                channel = self.channels.get(key[skip:].decode())
                if channel is None:
                    continue
                data = chunk(b"".join(item[1] for item in items))
                for client in tuple(channel.clients):
                    if client.replaying:
                        client.buffer.extend(items)
                    elif client.after is not None:
                        client.write_after(items)
                    else:
                        client.write(data)

    def heartbeat(self) -> None:
        data = chunk(b":\n\n")
        while True:
            gevent.sleep(HEARTBEAT_INTERVAL)
            for channel in tuple(self.channels.values()):
                for client in tuple(channel.clients):
                    client.write(data)

    # HTTP --------------------------------------------------------------------

    def handle(self, sock: socket.socket, address: tuple) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = sock.recv(8192)
                if not data or len(request) > 65536:
                    return
                request += data
            lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target = (lines[0].split(" ") + ["", ""])[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            path = target.split("?", 1)[0]
            if path == "/stats/":
                self.respond(sock, 200, "application/json", json.dumps(self.stats()).encode())
            elif (
                method == "GET"
                and path.startswith("/events/")
                and path.endswith("/")
                and len(path) > 9
            ):
                self.stream(sock, path[8:-1], headers.get("last-event-id") or None)
            else:
                self.respond(sock, 404, "text/plain", b"Not found\n")
        except OSError:
            pass
        finally:
            sock.close()

    @staticmethod
    def respond(sock: socket.socket, status: int, content_type: str, body: bytes) -> None:
        reason = {200: "OK", 404: "Not Found"}[status]
        sock.sendall(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def stream(self, sock: socket.socket, name: str, last_id: str | None) -> None:
        client = Client(sock, replaying=last_id is not None)
        sock.sendall(HEADERS + chunk(OPENING))
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel()
            self.subscribe(name)
        channel.clients[client] = None
        try:
            if last_id is not None:
                self.replay(channel, name, client, last_id.encode())
            while sock.recv(4096):  # an SSE client sends nothing: this returns at EOF
                pass
        except OSError:
            pass
        finally:
            client.closed = True
            channel.clients.pop(client, None)
            if not channel.clients and self.channels.get(name) is channel:
                del self.channels[name]
                try:
                    self.subscriber.sendall(command(b"UNSUBSCRIBE", PREFIX + name.encode()))
                except OSError:
                    pass

    def replay(self, channel: Channel, name: str, client: Client, last_id: bytes) -> None:
        """Send history after ``last_id``, then the live events that came meanwhile."""
        channel.ready.wait(5)  # live events are buffered from here on: none falls between
        entries = self.redis.xrange(PREFIX + name.encode(), min=b"(" + last_id, max="+")
        last = position(last_id)
        frames = []
        for entry_id, fields in entries:
            frames.append(frame(entry_id, fields[b"event"], fields[b"data"]))
            last = position(entry_id)
        if frames:
            client.write(chunk(b"".join(frames)))
        # No switch from here on: nothing is added to the buffer while it is flushed. Live
        # events the history read already returned may still be on their way from Redis.
        buffered, client.buffer = client.buffer, []
        client.after = last
        client.replaying = False
        client.write_after(buffered)

    def stats(self) -> dict:
        collector = introspect.totals()  # before this call's own collection
        gc.collect()
        greenlets, stacks = introspect.greenlets()
        return {
            "pid": os.getpid(),
            "streams": sum(len(channel.clients) for channel in self.channels.values()),
            "greenlets": greenlets,
            "greenlet_stack_bytes": stacks,
            "fds": len(os.listdir("/proc/self/fd")),
            "hub_channels": len(self.channels),
            **collector,
            **introspect.object_types(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    arguments = parser.parse_args()
    introspect.install()
    CeilingServer(arguments.port, arguments.redis_url).serve_forever()


if __name__ == "__main__":
    main()
