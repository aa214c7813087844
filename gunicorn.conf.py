"""Recommended gunicorn settings for long-lived Server-Sent Events streams (optional).

django-sse works under a plain ``gunicorn -k gevent mysite.wsgi`` or the
site's own config file; this file adds tuning for many open streams.

Run: gunicorn -c gunicorn.conf.py  (serves the example project unless you
pass another WSGI application, e.g. ``gunicorn -c gunicorn.conf.py mysite.wsgi``).
Every value can be overridden on the command line or through the
environment variables named below.
"""

import os

# No hook is needed for speed: in a gevent worker django-sse itself turns gevent's
# greenlet tree tracking off and, once the worker has loaded the application,
# freezes the heap and collects the young generation less often
# (django_sse.servers.tuning). A post_worker_init of your own that sets
# gc.set_threshold() keeps its values; GEVENT_TRACK_GREENLET_TREE=1 keeps the tree.

# The example project; replace with your own "mysite.wsgi" (or pass it on the command line).
wsgi_app = os.environ.get("SSE_WSGI_APP", "example.wsgi:application")
# Where the example project lives (added to sys.path).
pythonpath = os.environ.get("SSE_PYTHONPATH", "example")
# Where to listen.
bind = os.environ.get("SSE_BIND", "127.0.0.1:8000")
# gevent: one greenlet per stream, so a worker holds thousands of open streams.
# django-sse's own gevent worker opens streams with about a third less CPU
# (benchmarks/README.rst); SSE_WORKER_CLASS=gevent runs gunicorn's, equally supported.
worker_class = os.environ.get("SSE_WORKER_CLASS", "django_sse.worker.GeventWorker")
# Workers: one per core is plenty for streaming; Redis fans events out across them.
workers = int(os.environ.get("SSE_WORKERS", "1"))
# Concurrent connections per worker: SSE_MAX_STREAMS (20,000) streams and room for pages.
worker_connections = int(os.environ.get("SSE_WORKER_CONNECTIONS", "21000"))
# Seconds a stopping worker waits for requests to end; django-sse ends streams at once.
graceful_timeout = int(os.environ.get("SSE_GRACEFUL_TIMEOUT", "10"))
# Keep-alive for ordinary requests; streams stay open regardless.
keepalive = 5
# A gevent worker's heartbeat to the master; streams never block it.
timeout = 30
# Large backlog: a burst of reconnecting browsers after a deploy.
backlog = 4096
# Log to stderr; access log only when asked (one line per stream is noisy).
accesslog = os.environ.get("SSE_ACCESS_LOG") or None
errorlog = "-"
# No per-user control socket: several servers (tests, benchmarks) may run side by side.
control_socket_disable = True
