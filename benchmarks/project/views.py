"""The benchmarked views: one channel per URL, and what the worker holds."""

from __future__ import annotations

import gc
import os
import threading

from django.http import JsonResponse

from benchmarks import introspect
from django_sse.redisqueue import RedisQueueView
from django_sse.runtime import get_hub, streams


class ChannelView(RedisQueueView):
    """Stream the channel named in the URL."""

    def get_redis_channel(self):
        return self.kwargs["channel"]


def stats(request):
    """The worker's pid and what it holds right now (streams, greenlets, fds, Redis)."""
    collector = introspect.totals()  # before this view's own collection
    gc.collect()
    top = int(request.GET.get("trace", "0"))
    trace = {"trace": introspect.trace_growth(top)} if top else {}
    greenlets, stacks = introspect.greenlets()
    hub = get_hub()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "streams": len(streams),
            "greenlets": greenlets,
            "greenlet_stack_bytes": stacks,
            "threads": threading.active_count(),
            "fds": len(os.listdir("/proc/self/fd")),
            "hub_channels": len(hub.channel_names()),
            "hub_listeners": hub.listener_count(),
            **collector,
            # ?types=N: the N most common object types too (leak hunting).
            **introspect.object_types(int(request.GET.get("types", "0"))),
            **trace,
        }
    )
