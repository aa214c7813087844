"""The example's pages, and the streams they read.

Each feature of django-sse has a page: the page is an ordinary Django view
that renders a template, and the template's script opens an ``EventSource``
on the page's stream, one of the views below.
"""

import re
import time

from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from django_sse import send_event
from django_sse.redisqueue import RedisQueueView
from django_sse.sse import encode_data, encode_event
from django_sse.views import BaseSseView

from .publishers import SEQUENCE_CHANNEL, in_background, job_channel, publish_sequence, run_job

FEED_CHANNEL = "feed"
OBJECTS = {
    1: "Parcel to Lisbon",
    2: "Parcel to Oslo",
    3: "Parcel to Kyoto",
}
STATUSES = ["ordered", "packed", "shipped", "out for delivery", "delivered"]
JOB_ID = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def index(request):
    return render(request, "index.html", {"objects": OBJECTS})


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


# The clock: a plain BaseSseView --------------------------------------------


class ClockView(BaseSseView):
    """One event a second from ``iterator()``; the tick count resumes from ``Last-Event-ID``."""

    def iterator(self):
        try:
            tick = int(self.last_event_id or 0)
        except ValueError:
            tick = 0
        while True:
            tick += 1
            self.sse.add_message("tick", {"now": timezone.now(), "tick": tick}, event_id=tick)
            yield  # sends what add_message() buffered
            time.sleep(1)


def clock(request):
    return render(request, "clock.html")


# The live feed: a form whose view calls send_event ----------------------------


def feed(request):
    """Show the feed (GET), or publish a message to everyone reading it (POST)."""
    if request.method == "POST":
        # Browsers send a textarea's line breaks as CRLF; the feed keeps them as LF.
        text = request.POST.get("text", "").replace("\r\n", "\n")
        author = request.POST.get("author", "").strip() or "anonymous"
        if not text.strip():
            return JsonResponse({"error": "Write a message first."}, status=400)
        event_id = send_event(
            "message",
            {"author": author[:40], "text": text[:2000], "at": timezone.now()},
            FEED_CHANNEL,
        )
        if _wants_json(request):
            return JsonResponse({"id": event_id})
        return redirect("feed")
    return render(request, "feed.html")


# Per-object channels: the channel comes from the URL --------------------------


class ObjectEventsView(RedisQueueView):
    """Stream the channel of one object, ``object-<pk>``; unknown objects are refused (403)."""

    def get_redis_channel(self):
        return f"object-{self.kwargs['pk']}"

    def can_read_channel(self, request, channel):
        return self.kwargs["pk"] in OBJECTS


def object_detail(request, pk):
    """Show one object (GET), or publish a change of its status to its channel (POST)."""
    if pk not in OBJECTS:
        raise Http404("No such object.")
    if request.method == "POST":
        status = request.POST.get("status")
        if status not in STATUSES:
            return JsonResponse({"error": f"Unknown status {status!r}."}, status=400)
        note = request.POST.get("note", "").replace("\r\n", "\n")[:500]
        event_id = send_event(
            "status", {"status": status, "note": note, "at": timezone.now()}, f"object-{pk}"
        )
        if _wants_json(request):
            return JsonResponse({"id": event_id})
        return redirect("object", pk=pk)
    others = {other: name for other, name in OBJECTS.items() if other != pk}
    return render(
        request,
        "object.html",
        {"pk": pk, "name": OBJECTS[pk], "statuses": STATUSES, "others": others},
    )


# Job progress: published by another process (or a greenlet of the server) -----


class JobEventsView(RedisQueueView):
    """Stream the progress of one job, published to ``job-<job_id>``."""

    def get_redis_channel(self):
        return job_channel(self.kwargs["job_id"])


def jobs(request):
    """Pick a job id and go to its page."""
    job_id = request.GET.get("job_id", "").strip()
    if JOB_ID.fullmatch(job_id):
        return redirect("job", job_id=job_id)
    suggestion = timezone.now().strftime("report-%H%M%S")
    return render(request, "jobs.html", {"suggestion": suggestion, "invalid": bool(job_id)})


def job_detail(request, job_id):
    return render(request, "job.html", {"job_id": job_id})


@require_POST
def job_start(request, job_id):
    """Run the job inside this server process, for when no other process can reach the page."""
    steps = 20
    in_background(run_job, job_id, steps=steps, delay=0.3)
    if _wants_json(request):
        return JsonResponse({"started": job_id, "steps": steps})
    return redirect("job", job_id=job_id)


# Reconnect: numbered messages, resumed after Last-Event-ID ---------------------


class SequenceEventsView(RedisQueueView):
    """Stream the numbered messages; first say which ``Last-Event-ID`` the stream resumes after."""

    redis_channel = SEQUENCE_CHANNEL

    def opening(self):
        resumed = encode_event("resumed", encode_data({"last_event_id": self.last_event_id}))
        return super().opening() + resumed.encode()


def reconnect(request):
    return render(request, "reconnect.html")


@require_POST
def reconnect_start(request):
    """Publish a numbered sequence from inside this server process."""
    count = 60
    in_background(publish_sequence, count, 0.5)
    if _wants_json(request):
        return JsonResponse({"count": count})
    return redirect(reverse("reconnect"))
