"""Interpreter tuning for a gevent worker holding thousands of long-lived streams.

What ``gunicorn.conf.py`` used to do in ``post_worker_init``, done by the
gevent adapters themselves so that a plain ``gunicorn -k gevent mysite.wsgi``
gets the same figures:

- greenlet tree tracking off (gevent keeps, per greenlet, the greenlet that
  spawned it: one per stream, for a debugging aid);
- once the worker has loaded the application and run its hooks, the heap
  frozen (``gc.freeze()``: start-up objects leave the collector's reach, and
  a full collection no longer walks them) and the young generation collected
  every ``GC_THRESHOLD[0]`` allocations instead of Python's 700.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from ..core.concurrency import Task, sleep

#: The collector's thresholds once tuned (Python's default is (700, 10, 10)):
#: thousands of streams allocate little, and each young collection costs time.
GC_THRESHOLD = (10000, 50, 100)


def untrack_greenlet_tree() -> None:
    """Turn gevent's greenlet tree tracking off unless ``GEVENT_TRACK_GREENLET_TREE`` is set.

    gevent reads the option as each greenlet is created, so it takes effect
    for every connection accepted afterwards. Set the variable to 1 to keep
    the tree (a debugging aid).
    """
    if "GEVENT_TRACK_GREENLET_TREE" in os.environ:
        return
    import gevent

    gevent.config.track_greenlet_tree = False


def tune_once_loaded(worker: Any, tune_gc: bool = True) -> None:
    """Untrack the greenlet tree now; freeze the heap and raise the thresholds once ``worker`` has booted.

    gunicorn sets ``worker.booted`` after it has loaded the application and
    run ``post_worker_init``. ``tune_gc`` (``SSE_TUNE_GC``, default True):
    False leaves Python's collector as it is (to measure it, or for a site
    that tunes it otherwise). Pitfall: a site whose own hook set thresholds
    keeps them (they are left alone when they differ from what they were here).
    """
    untrack_greenlet_tree()
    if not tune_gc:
        return
    before = gc.get_threshold()

    def tune() -> None:
        # Checked every 2 ms: a storm of reconnections reaches a new worker as soon as it
        # listens, and what it allocates before the thresholds are raised is collected often.
        while not getattr(worker, "booted", True):
            sleep(0.002)
        gc.freeze()
        if gc.get_threshold() == before:
            gc.set_threshold(*GC_THRESHOLD)

    Task(tune, name="django-sse-tune")
