"""The streams this process serves: counted for the limit, ended together at shutdown."""

from __future__ import annotations

import threading

from .mailbox import Mailbox


class StreamRegistry:
    """The mailboxes of every open stream in this process."""

    def __init__(self) -> None:
        self._mailboxes: set[Mailbox] = set()
        self._lock = threading.Lock()
        self.closing = False

    def add(self, mailbox: Mailbox, limit: int | None) -> bool:
        """Register ``mailbox``; return False when the process is full or shutting down."""
        with self._lock:
            if self.closing or (limit is not None and len(self._mailboxes) >= limit):
                return False
            self._mailboxes.add(mailbox)
            return True

    def discard(self, mailbox: Mailbox) -> None:
        with self._lock:
            self._mailboxes.discard(mailbox)

    def end_all(self, reason: str) -> int:
        """Ask every open stream to finish; refuse new ones. Return how many were asked."""
        with self._lock:
            self.closing = True
            mailboxes = list(self._mailboxes)
        for mailbox in mailboxes:
            mailbox.end(reason)
        return len(mailboxes)

    def __len__(self) -> int:
        return len(self._mailboxes)


streams = StreamRegistry()
