"""What the servers' ``/stats/`` report about the interpreter: GC time, greenlets."""

from __future__ import annotations

import gc
import time

_totals = {"gc_seconds": 0.0, "gc_full_seconds": 0.0, "gc_collections": 0, "gc_full": 0}
_started = [0.0]


def _callback(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.process_time()
        return
    spent = time.process_time() - _started[0]
    _totals["gc_seconds"] += spent
    _totals["gc_collections"] += 1
    if info.get("generation") == 2:
        _totals["gc_full_seconds"] += spent
        _totals["gc_full"] += 1


def install() -> None:
    """Start accounting (once per process)."""
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)


def totals() -> dict:
    """CPU seconds in the collector (all generations, and full ones) and how many runs."""
    return {key: round(value, 4) if isinstance(value, float) else value
            for key, value in _totals.items()}


def greenlets() -> tuple[int, int]:
    """Return how many greenlets are alive and the C stack bytes they keep saved on the heap."""
    try:
        from greenlet import greenlet
    except ImportError:
        return 0, 0
    count = saved = 0
    for obj in gc.get_objects():
        if isinstance(obj, greenlet) and not obj.dead:
            count += 1
            saved += getattr(obj, "_stack_saved", 0)
    return count, saved
