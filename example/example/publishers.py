"""Work that publishes events as it goes, run by a management command or by the server.

``run_job`` stands for any long task (an import, a report, a video encode)
that reports its progress; ``publish_sequence`` sends numbered messages so
that a page can prove it missed none across reconnections.
"""

import threading
import time
import uuid

from django_sse import send_event


def job_channel(job_id):
    return f"job-{job_id}"


SEQUENCE_CHANNEL = "sequence"


def run_job(job_id, steps=20, delay=0.5, report=None):
    """Do ``steps`` steps of fake work, publishing the progress of each to the job's channel."""
    channel = job_channel(job_id)
    send_event("started", {"job": job_id, "steps": steps}, channel)
    for step in range(1, steps + 1):
        time.sleep(delay)  # the work
        percent = round(100 * step / steps)
        send_event(
            "progress", {"job": job_id, "step": step, "steps": steps, "percent": percent}, channel
        )
        if report:
            report(f"{job_id}: step {step}/{steps} ({percent}%)")
    send_event("done", {"job": job_id, "steps": steps}, channel)


def publish_sequence(count=60, interval=0.5, report=None):
    """Publish ``count`` messages numbered 1..count, ``interval`` seconds apart."""
    run = uuid.uuid4().hex[:8]
    for n in range(1, count + 1):
        event_id = send_event("seq", {"run": run, "n": n, "of": count}, SEQUENCE_CHANNEL)
        if report:
            report(f"{run} #{n} id {event_id}")
        if n < count:
            time.sleep(interval)
    return run


def in_background(function, *args, **kwargs):
    """Run ``function`` beside the request: a greenlet under gunicorn's gevent worker, else a thread."""
    thread = threading.Thread(target=function, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread
