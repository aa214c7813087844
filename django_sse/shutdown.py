"""Ending a process's streams cleanly when its server stops.

Every stream ends with a retry hint and the chunked body's last chunk, and
its connection is closed: the client reconnects at once, to another worker
or the restarted server, and resumes from its ``Last-Event-ID``. Under
gunicorn, uvicorn and daphne this happens by itself (``django_sse.servers``);
a program that runs ``gevent.pywsgi.WSGIServer`` itself calls
``stop_gracefully()``.

The waits are written once, as generators of pauses (``stop_pauses``,
``drain_pauses``): a thread or greenlet sleeps them (``sleep_through``), an
event loop awaits them (``django_sse.servers.base.asleep_through``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from .core.concurrency import Task, sleep
from .core.mailbox import EndReason
from .core.runtime import streams

logger = logging.getLogger(__name__)

#: Seconds between two looks while a stop or a drain is awaited.
STEP = 0.02


def end_streams(reason: EndReason = EndReason.SHUTDOWN) -> int:
    """End every stream of this process with a retry hint; refuse new ones. Return how many."""
    count = streams.end_all(reason)
    if count:
        logger.info("Ending %d stream(s): %s.", count, reason.value)
    return count


def stop_pauses(
    stopping: Callable[[], bool],
    accepting: Callable[[], bool],
    poll: float,
    accept_wait: float,
) -> Iterator[float]:
    """Yield the pauses until the server is ``stopping()`` and no longer ``accepting()``; then end the streams.

    Once told to stop, a server closes its listening sockets a moment later;
    the streams end only then (or after ``accept_wait`` seconds), so that no
    client reconnects to this very process. Pitfall: ``stopping`` is polled
    every ``poll`` seconds, so a stop is seen up to ``poll`` seconds late.
    """
    while not stopping():
        yield poll
    deadline = time.monotonic() + accept_wait
    while accepting() and time.monotonic() < deadline:
        yield STEP
    end_streams()


def drain_pauses(timeout: float, step: float = STEP) -> Iterator[float]:
    """End the streams, then yield the pauses until their responses have finished (at most ``timeout`` s).

    A response is finished once the chunked body's last chunk is written: a
    server that stops right after ``end_streams()`` would cut that off.
    """
    deadline = time.monotonic() + timeout
    end_streams()
    while streams.open_responses() and time.monotonic() < deadline:
        yield step


def sleep_through(pauses: Iterator[float]) -> None:
    """Sleep each pause in turn (in a greenlet or thread) until ``pauses`` is exhausted."""
    for pause in pauses:
        sleep(pause)


def end_streams_when_stopping(worker: Any, poll: float = 0.2, accept_wait: float = 2.0) -> None:
    """Watch a gunicorn worker; end its streams once it is told to stop and no longer accepts.

    ``worker.alive`` turns false on TERM, HUP (the master TERMs the old
    workers) and ``max_requests``. gunicorn closes the worker's listening
    sockets at its next tick, up to a second later; streams end only then
    (or after ``accept_wait`` seconds), so that no client reconnects to this
    very worker.
    """
    pauses = stop_pauses(
        lambda: not worker.alive, lambda: not _listeners_closed(worker), poll, accept_wait
    )
    Task(lambda: sleep_through(pauses), name="django-sse-shutdown")


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
    sleep_through(drain_pauses(timeout, step=0.05))
    server.stop(timeout=max(deadline - time.monotonic(), 0.0))
