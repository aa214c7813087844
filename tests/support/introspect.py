"""What the servers' ``/stats/`` report about the interpreter: GC time, greenlets, objects.

With ``BENCH_TRACEMALLOC=1`` in the server's environment, ``tracemalloc``
records allocations from start-up and ``/stats/?trace=N`` returns the N
allocation sites whose memory grew most since the previous such request:
the way to find what a leak is made of.
"""

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
    return {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in _totals.items()
    }


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


def object_types(top: int = 0) -> dict:
    """The number of objects the collector tracks, and the ``top`` most common types."""
    from collections import Counter

    objects = gc.get_objects()
    result: dict = {"objects": len(objects)}
    if top:
        counts = Counter(type(obj).__qualname__ for obj in objects)
        result["types"] = dict(counts.most_common(top))
    return result


_snapshot: list = []


def start_tracing() -> None:
    import os
    import tracemalloc

    if os.environ.get("BENCH_TRACEMALLOC") and not tracemalloc.is_tracing():
        tracemalloc.start(6)


def trace_growth(top: int) -> list[str]:
    """The ``top`` allocation sites that grew most since the last call (needs tracing)."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return ["tracemalloc is off: start the server with BENCH_TRACEMALLOC=1"]
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    previous = _snapshot[0] if _snapshot else None
    _snapshot[:] = [snapshot]
    if previous is None:
        stats = snapshot.statistics("traceback")[:top]
        return [
            f"{s.size} B in {s.count} blocks: "
            + " <- ".join(
                f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}" for f in s.traceback
            )
            for s in stats
        ]
    stats = snapshot.compare_to(previous, "traceback")[:top]
    return [
        f"{s.size_diff:+} B, {s.count_diff:+} blocks: "
        + " <- ".join(
            f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}" for f in s.traceback
        )
        for s in stats
    ]
