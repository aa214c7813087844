"""What ``/stats/`` reports about the interpreter; it lives in ``tests.support.introspect``.

The benchmarked project's WSGI entry and the ceiling server import it from
here: ``install()`` the collector accounting, ``start_tracing()`` with
``BENCH_TRACEMALLOC=1``.
"""

from tests.support.introspect import (
    greenlets,
    install,
    object_types,
    start_tracing,
    totals,
    trace_growth,
)

__all__ = ["greenlets", "install", "object_types", "start_tracing", "totals", "trace_growth"]
