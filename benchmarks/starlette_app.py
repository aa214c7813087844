"""sse-starlette on uvicorn, serving the library's Redis channels as its users would (``sse-starlette``).

``GET /events/<channel>/`` is an ``EventSourceResponse`` over an async
generator, as sse-starlette's documentation shows: it first yields the
reconnection delay (the first body bytes, so the client counts the stream
open), then a dict per event, which sse-starlette encodes for each client.
The events come from Redis pub/sub in the library's wire format 1 (channel
``sse:<channel>``, payload ``1\\n<id>\\n<event>\\n<data>``), so the
benchmark's publisher drives it as it drives the other servers.

Subscriptions: one ``redis.asyncio`` pub/sub connection for the process
(a reader task puts each message into an ``asyncio.Queue`` per client of
its channel), not one per client: a subscription per client, the naive way,
would need 10,000 Redis connections for the idle scenario, above Redis's
``maxclients``. No replay (``Last-Event-ID`` is ignored), no limits, no
auth: a comparison of serving costs, not a server to deploy.
``GET /stats/`` reports what the process holds, as the other servers do.

Needs the benchmark-only requirements (``benchmarks/requirements.txt``).
Run: ``BENCH_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn benchmarks.starlette_app:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks import introspect

PREFIX = "sse:"


class Broadcast:
    """One pub/sub connection for the process; a queue per client, per channel."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.channels: dict[str, set[asyncio.Queue[dict]]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def join(self, channel: str) -> asyncio.Queue[dict]:
        queue: asyncio.Queue[dict] = asyncio.Queue()
        listeners = self.channels.get(channel)
        if listeners is None:
            listeners = self.channels[channel] = set()
            await self.pubsub.subscribe(PREFIX + channel)
        listeners.add(queue)
        if self.reader is None:
            self.reader = asyncio.get_running_loop().create_task(self._read())
        return queue

    async def leave(self, channel: str, queue: asyncio.Queue[dict]) -> None:
        listeners = self.channels.get(channel)
        if listeners is None:
            return
        listeners.discard(queue)
        if not listeners:
            del self.channels[channel]
            await self.pubsub.unsubscribe(PREFIX + channel)

    async def _read(self) -> None:
        while True:
            if not self.pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            message = await self.pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()[len(PREFIX) :]
            _version, event_id, event, data = message["data"].decode().split("\n", 3)
            item = {"id": event_id, "event": event, "data": data}
            for queue in self.channels.get(channel, ()):
                queue.put_nowait(item)


broadcast: Broadcast | None = None


def get_broadcast() -> Broadcast:
    global broadcast
    if broadcast is None:
        broadcast = Broadcast(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    return broadcast


async def events(request: Request) -> EventSourceResponse:
    channel = request.path_params["channel"]
    hub = get_broadcast()
    queue = await hub.join(channel)

    async def stream() -> AsyncIterator[dict]:
        try:
            yield {"retry": 2000, "comment": ""}
            while True:
                yield await queue.get()
        finally:
            with contextlib.suppress(Exception):
                await hub.leave(channel, queue)

    return EventSourceResponse(stream(), sep="\n", ping=15)


async def stats(request: Request) -> JSONResponse:
    collector = introspect.totals()
    gc.collect()
    hub = get_broadcast()
    return JSONResponse(
        {
            "pid": os.getpid(),
            "streams": sum(len(listeners) for listeners in hub.channels.values()),
            "greenlets": 0,
            "greenlet_stack_bytes": 0,
            "fds": len(os.listdir("/proc/self/fd")),
            "hub_channels": len(hub.channels),
            **collector,
            **introspect.object_types(),
        }
    )


introspect.install()
app = Starlette(
    routes=[Route("/events/{channel}/", events), Route("/stats/", stats)],
)
