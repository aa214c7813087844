"""WSGI entry of the benchmarked server: ``gunicorn -c gunicorn.conf.py benchmarks.project.wsgi``.

``BENCH_GC`` tries garbage-collector settings without touching the library
(an experiment, off by default): ``freeze`` moves everything allocated at
start-up out of the collector's reach (``gc.freeze()``), ``off`` disables
it, a number sets the generation-0 threshold. ``BENCH_TRACEMALLOC=1`` traces
allocations for ``/stats/?trace=N`` (see ``benchmarks/introspect.py``).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

from benchmarks import introspect  # noqa: E402
from benchmarks.project import apply_bench_gc  # noqa: E402

introspect.install()  # /stats/ reports the time spent collecting garbage
introspect.start_tracing()  # with BENCH_TRACEMALLOC=1
application = get_wsgi_application()
apply_bench_gc()
