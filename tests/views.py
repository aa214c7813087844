"""Views of the test project: small streams whose behaviour the tests observe."""

from __future__ import annotations

import asyncio
import json
import os
import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django_sse import send_event
from django_sse.redisqueue import RedisQueueView
from django_sse.views import BaseSseView
from tests.support.stats import count as _count
from tests.support.stats import counters  # noqa: F401  (what /stats/ reports the views did)


def _tick_query(request) -> tuple[float, int | None]:
    """Return the ``interval`` (default 0.05 s) and ``n`` (default: forever) of a ticking stream."""
    return float(request.GET.get("interval", "0.05")), int(request.GET.get("n", "0")) or None


class TickView(BaseSseView):
    """Send ``count`` ticks (query ``n``, default forever), ``interval`` seconds apart."""

    def iterator(self):
        _count("iterator_started")
        interval, count = _tick_query(self.request)
        sent = 0
        try:
            while count is None or sent < count:
                self.sse.add_message("tick", str(sent))
                sent += 1
                yield
                time.sleep(interval)
        finally:
            _count("iterator_finally")


class OwnedTickView(TickView):
    """Ticks for the owner named by the ``owner`` query parameter (a stand-in for a login)."""

    def get_owner(self):
        return self.request.GET.get("owner")


class BlockedView(BaseSseView):
    """Send one event, then block for an hour inside ``iterator()``."""

    def iterator(self):
        _count("iterator_started")
        try:
            self.sse.add_message("hello", "blocked next")
            yield
            time.sleep(3600)
            yield
        finally:
            _count("iterator_finally")


class AsyncBlockedView(BaseSseView):
    """BlockedView with an ``async def iterator()``: it awaits for an hour on the event loop (ASGI only)."""

    async def iterator(self):
        _count("iterator_started")
        try:
            self.sse.add_message("hello", "blocked next")
            yield
            await asyncio.sleep(3600)
            yield
        finally:
            _count("iterator_finally")


class AsyncTickView(BaseSseView):
    """TickView with an ``async def iterator()`` (ASGI only)."""

    async def iterator(self):
        _count("iterator_started")
        interval, count = _tick_query(self.request)
        sent = 0
        try:
            while count is None or sent < count:
                self.sse.add_message("tick", str(sent))
                sent += 1
                yield
                await asyncio.sleep(interval)
        finally:
            _count("iterator_finally")


class ChannelView(RedisQueueView):
    """Stream the channel named in the URL."""

    def get_redis_channel(self):
        return self.kwargs["channel"]


class AsyncStaffChannelView(ChannelView):
    """The URL's channel; ``staff-*`` ones only to members of the group "staff", asked with ``await request.auser()``."""

    async def can_read_channel(self, request, channel):
        if not channel.startswith("staff-"):
            return True
        user = await request.auser()
        return user.is_authenticated and await user.groups.filter(name="staff").aexists()


class StaffChannelView(ChannelView):
    """The URL's channel; ``staff-*`` ones only while ``request.user.is_staff`` (an attribute, no query)."""

    def can_read_channel(self, request, channel):
        return not channel.startswith("staff-") or request.user.is_staff


class OwnedChannelView(ChannelView):
    """Stream the URL's channel for the owner named by the ``owner`` query parameter (a stand-in for a login)."""

    def get_owner(self):
        return self.request.GET.get("owner")


class MultiChannelView(RedisQueueView):
    """Stream every ``channel`` query parameter."""

    def get_redis_channels(self):
        return self.request.GET.getlist("channel")


@csrf_exempt
def publish(request):
    """POST event, data, channel: publish from inside the server process."""
    event_id = send_event(request.POST["event"], request.POST["data"], request.POST["channel"])
    return JsonResponse({"id": event_id})


def eventsource_page(request):
    """A page with an ``EventSource`` of its own on ``/ticks/``, counting the ticks (browser tests)."""
    return HttpResponse(
        "<!doctype html><title>ticks</title><p id='count'>0</p><script>"
        "let ticks = 0; const source = new EventSource('/ticks/?interval=0.2');"
        "source.addEventListener('tick', () => {"
        " document.getElementById('count').textContent = String(++ticks); });"
        "</script>"
    )


def plain(request):
    """A non-streaming page, to compare middleware behaviour."""
    return HttpResponse("x" * 1000)


@csrf_exempt
def echo(request, rest=""):
    """What the server made of the request: method, path, body, scheme, some META keys."""
    meta = request.META
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "query": request.GET.dict(),
            "body": request.body.decode("latin-1"),
            "secure": request.is_secure(),
            "server": [meta.get("SERVER_NAME"), meta.get("SERVER_PORT")],
            "protocol": meta.get("SERVER_PROTOCOL"),
            "http": {key: value for key, value in meta.items() if key.startswith("HTTP_")},
            "socket": "gunicorn.socket" in meta,
        }
    )


def stats_json(response) -> dict:
    return json.loads(response.content)


class GuardedChannelView(MultiChannelView):
    """Stream every ``channel`` query parameter; channels named ``secret*`` are refused."""

    def can_read_channel(self, request, channel):
        return not channel.startswith("secret")


#: State that InitialStateView snapshots: a counter per channel, updated before each publish.
STATE: dict[str, int] = {}


class InitialStateView(ChannelView):
    """The URL's channel, preceded for a new client by a ``state`` event holding its counter."""

    def get_initial_events(self):
        return [("state", {"n": STATE.get(self.kwargs["channel"], 0)})]


class WorkerChannelView(ChannelView):
    """Stream the URL's channel; the ``X-Worker-Pid`` header names the worker serving it."""

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["X-Worker-Pid"] = str(os.getpid())
        return response


class LateView(BaseSseView):
    """Send one event ``delay`` seconds (query, default 2) after the stream opens, then end."""

    def iterator(self):
        time.sleep(float(self.request.GET.get("delay", "2")))
        self.sse.add_message("late", "after the delay")
        yield


def overlong(request):
    """Declare ``Content-Length: 5`` and give more: a server must send five bytes, no more."""
    response = HttpResponse(b"hello" + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
    response["Content-Length"] = "5"
    return response


def header_from_query(request):
    """Answer with ``X-Echo`` set to the query's ``value``, control characters and all."""
    response = HttpResponse(b"ok")
    response.headers._store["x-echo"] = ("X-Echo", request.GET.get("value", ""))
    return response
