"""ASGI entry of the benchmarked server: ``uvicorn benchmarks.project.asgi:application`` (``library-asgi``).

The same project, views and settings as ``wsgi.py``, under Django's standard
``get_asgi_application()``; ``BENCH_GC`` as there.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from benchmarks import introspect  # noqa: E402
from benchmarks.project import apply_bench_gc  # noqa: E402

introspect.install()  # /stats/ reports the time spent collecting garbage
introspect.start_tracing()  # with BENCH_TRACEMALLOC=1
application = get_asgi_application()
apply_bench_gc()  # BENCH_GC, as wsgi.py
