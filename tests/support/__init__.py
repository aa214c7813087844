"""What the tests and the benchmarks share to run and watch real servers.

``servers`` starts redis-server, gunicorn, pywsgi and runserver on free
loopback ports and stops them by PID; ``procfs`` reads what /proc says about
a process (memory, fds, CPU, children, TCP connections); ``sse`` is the
raw-socket client of event streams; ``polling`` waits for a condition;
``stats`` is the ``/stats/`` view of both projects and its client;
``introspect`` what that view reports about the interpreter.

No module here imports Django at import time, or the test settings, so the
benchmarks' processes import them too.
"""
