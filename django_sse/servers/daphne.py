"""daphne (``daphne mysite.asgi:application``), one process on Twisted's reactor.

daphne, on TERM, cancels every application at once (its reactor's "before
shutdown" trigger). So under daphne the handler of SIGTERM (the reactor's
``sigTerm``) is wrapped once: it first ends every stream with a retry hint
and waits, at most ``DRAIN_WAIT`` seconds, for their responses to finish,
then calls the reactor's handler. A second TERM stops at once.

At start-up the application is loaded by daphne's ``CommandLineInterface``
(found on the stack); the reactor's handler exists only once it serves, so
it is wrapped when the first stream of the event loop opens.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any

from ..shutdown import drain_pauses
from .base import Adapter, asleep_through, is_class_named, loading_owner, signal_owner
from .uvicorn import keep

#: Seconds daphne's TERM waits for the ended streams' responses to finish.
DRAIN_WAIT = 5.0


def reactor_term_handler() -> Any | None:
    """Return the Twisted reactor's SIGTERM handler (daphne), or None; only in the main thread."""
    if "twisted.internet.reactor" not in sys.modules:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # signal.signal() would refuse
    owner = signal_owner()
    if owner is None or not type(owner).__module__.startswith("twisted."):
        return None
    return signal.getsignal(signal.SIGTERM)


class DrainFirst:
    """A SIGTERM handler that ends the streams and lets them finish before the reactor's own runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, then: Any) -> None:
        self.loop = loop
        self.then = then
        self.called = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.called:  # a second TERM: stop at once
            self.then(signum, frame)
            return
        self.called = True
        self.loop.call_soon_threadsafe(lambda: keep(self.loop.create_task(self._drain(signum))))

    async def _drain(self, signum: int) -> None:
        await asleep_through(drain_pauses(DRAIN_WAIT))
        self.then(signum, None)


class Daphne(Adapter):
    """daphne: one process; its TERM made to end the streams first."""

    name = "daphne"

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        handler = reactor_term_handler()
        if handler is not None:
            signal.signal(signal.SIGTERM, DrainFirst(loop, handler))


def find() -> Adapter | None:
    """Return daphne's adapter when daphne loads or runs this process, else None."""
    if "daphne.cli" in sys.modules and loading_owner(
        lambda owner: is_class_named(owner, "daphne.cli", "CommandLineInterface")
    ):
        return Daphne()
    return Daphne() if reactor_term_handler() is not None else None
