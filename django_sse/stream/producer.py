"""Running a view's ``iterator()`` beside its stream: what each ``yield`` buffered goes to the mailbox.

A plain generator runs in a task of its own (a greenlet under gevent, else
a thread); an ``async def iterator()`` runs as an asyncio task on the loop.
Either way an exception ends the stream (logged), and the generator is
closed, running its ``finally:``, however the stream ended.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Any

from .. import metrics
from ..core.database import release_connections
from ..core.mailbox import END, Mailbox
from ..sse import Sse

logger = logging.getLogger(__name__)


def hand_over(sse: Sse, mailbox: Mailbox, counted: int) -> int:
    """Put what ``iterator()`` buffered in ``sse`` into ``mailbox``; return the events counted so far."""
    chunk = sse.take()
    if chunk:
        mailbox.put(chunk)
        metrics.counts.delivered += sse.events_added - counted
        return sse.events_added
    return counted


class Feed:
    """Hands what each ``yield`` of an ``iterator()`` buffered to the mailbox; logs what it raised.

    As a context manager it ends the stream on an ``Exception`` from the
    generator (logged, not raised); ``GreenletExit`` and ``CancelledError``,
    which end the stream from outside, pass.
    """

    __slots__ = ("sse", "mailbox", "owner", "counted")

    def __init__(self, sse: Sse, mailbox: Mailbox, owner: str) -> None:
        self.sse = sse
        self.mailbox = mailbox
        self.owner = owner
        self.counted = sse.events_added

    def yielded(self) -> bool:
        """Hand over what was buffered; return whether the stream is ending (stop iterating)."""
        self.counted = hand_over(self.sse, self.mailbox, self.counted)
        return self.mailbox.ending

    def __enter__(self) -> Feed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is None or not issubclass(exc_type, Exception):
            return False
        logger.error(
            "%s.iterator() raised; ending the stream.",
            self.owner,
            exc_info=exc,
        )
        return True


def run_iterator(
    generator: Generator[Any, Any, Any], sse: Sse, mailbox: Mailbox, owner: str
) -> None:
    """Run a plain ``iterator()`` of the view named ``owner`` to its end or the stream's."""
    feed = Feed(sse, mailbox, owner)
    try:
        with feed:
            for _ in generator:
                if feed.yielded():
                    break
            feed.yielded()
    finally:
        # Under gevent, stop() raises GreenletExit where the generator blocks;
        # either way its finally: runs here, in its own greenlet or thread.
        generator.close()
        mailbox.put_control(END)
        release_connections()  # this greenlet or thread ends: so do its connections


async def arun_iterator(
    generator: AsyncGenerator[Any, Any], sse: Sse, mailbox: Mailbox, owner: str
) -> None:
    """Run an ``async def iterator()`` on the event loop, as ``run_iterator`` runs a plain one.

    ``view.stop()`` cancels the task that runs this: ``CancelledError`` is
    raised where the generator awaits, so its ``finally:`` runs at once.
    """
    feed = Feed(sse, mailbox, owner)
    try:
        with feed:
            async for _ in generator:
                if feed.yielded():
                    break
            feed.yielded()
    finally:
        await generator.aclose()
        mailbox.put_control(END)
