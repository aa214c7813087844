"""Django's own floor under ASGI (``django-floor``): what any Django SSE view costs to open.

The benchmark project's settings and middleware, and for ``/events/<channel>/``
an ``async def`` view whose response yields the opening (``retry:`` and a
comment) and one ``probe`` event, then waits until the client leaves. No
library, no Redis, no subscription: the request through Django's
``ASGIHandler`` alone, which no Django view can go below. It serves the
idle scenario only (it delivers no ``tick`` events).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

from benchmarks import introspect

OPENING = b"retry: 2000\n\n:\n\n"
PROBE = b"event: probe\ndata: floor\n\n"


async def _body() -> AsyncIterator[bytes]:
    yield OPENING
    yield PROBE
    await asyncio.Event().wait()  # cancelled when the client leaves


async def floor_view(request: HttpRequest, channel: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


def stats(request: HttpRequest) -> JsonResponse:
    """What the driver reads of ``/stats/``, without the library (whose hub would connect)."""
    collector = introspect.totals()
    gc.collect()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "greenlets": 0,
            "greenlet_stack_bytes": 0,
            "fds": len(os.listdir("/proc/self/fd")),
            **collector,
        }
    )


urlpatterns = [
    path("events/<str:channel>/", floor_view),
    path("stats/", stats),
]
