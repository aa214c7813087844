"""Ending a process's streams cleanly when its server stops.

Every stream ends with a retry hint and the chunked body's last chunk, and
its connection is closed: the client reconnects at once, to another worker
or the restarted server, and resumes from its ``Last-Event-ID``. Under
gunicorn this happens by itself (``servers.gunicorn``); a program that runs
``gevent.pywsgi.WSGIServer`` itself calls ``stop_gracefully()``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .core.concurrency import Task, sleep
from .core.mailbox import EndReason
from .core.runtime import streams

logger = logging.getLogger(__name__)


def end_streams(reason: EndReason = EndReason.SHUTDOWN) -> int:
    """End every stream of this process with a retry hint; refuse new ones. Return how many."""
    count = streams.end_all(reason)
    if count:
        logger.info("Ending %d stream(s): %s.", count, reason.value)
    return count


def end_streams_when_stopping(worker: Any, poll: float = 0.2, accept_wait: float = 2.0) -> None:
    """Watch a gunicorn worker; end its streams once it is told to stop and no longer accepts.

    ``worker.alive`` turns false on TERM, HUP (the master TERMs the old
    workers) and ``max_requests``. gunicorn closes the worker's listening
    sockets at its next tick, up to a second later; streams end only then
    (or after ``accept_wait`` seconds), so that no client reconnects to this
    very worker.
    """

    def watch() -> None:
        while worker.alive:
            sleep(poll)
        deadline = time.monotonic() + accept_wait
        while not _listeners_closed(worker) and time.monotonic() < deadline:
            sleep(0.02)
        end_streams()

    Task(watch, name="django-sse-shutdown")


def _listeners_closed(worker: Any) -> bool:
    for sock in getattr(worker, "sockets", ()):
        try:
            if sock.fileno() != -1:
                return False
        except (OSError, ValueError):
            continue  # closed
    return True


def stop_gracefully(server: Any, timeout: float = 10.0) -> None:
    """Stop a ``gevent.pywsgi.WSGIServer`` (or ``StreamServer``): end the streams, then the server.

    Call it from a signal handler, e.g.
    ``gevent.signal_handler(signal.SIGTERM, stop_gracefully, server)``.
    ``server.stop(timeout)`` alone would wait ``timeout`` seconds for streams
    that never end by themselves, then cut them off; and ``server.close()``
    makes ``serve_forever()`` return, and the program exit, at once. Here the
    server stops accepting, every stream ends with a retry hint, and the
    server waits at most ``timeout`` seconds for the responses to finish
    (a client that reads slowly gets the rest of its stream) before it stops.
    """
    deadline = time.monotonic() + timeout
    server.stop_accepting()  # a reconnection waits in the backlog, then goes elsewhere
    end_streams()
    # A response is closed after the chunked body's last chunk: a server without a
    # pool (pywsgi's default) would not wait for that.
    while streams.open_responses() and time.monotonic() < deadline:
        sleep(0.05)
    server.stop(timeout=max(deadline - time.monotonic(), 0.0))
