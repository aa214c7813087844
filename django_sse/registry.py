"""The streams of one process: counted for the limit, ended together at shutdown."""

from __future__ import annotations

from .concurrency import new_lock
from .mailbox import EndReason, Mailbox


class StreamRegistry:
    """The mailboxes of every open stream in this process.

    A stream holds its slot (``len()``, for ``SSE_MAX_STREAMS``) until its
    loop ends (``discard()``); its response counts as open until the server
    closes it (``closed()``), after the chunked body's last chunk, which is
    what a graceful stop waits for (``open_responses()``).
    """

    def __init__(self) -> None:
        self._mailboxes: set[Mailbox] = set()
        self._unclosed: set[Mailbox] = set()
        self._lock = new_lock()
        self._closing = False

    @property
    def closing(self) -> bool:
        """Whether the process is shutting down (``end_all()`` was called)."""
        return self._closing

    def add(self, mailbox: Mailbox, limit: int | None) -> bool:
        """Register ``mailbox``; return False when the process is full or shutting down."""
        with self._lock:
            if self._closing or (limit is not None and len(self._mailboxes) >= limit):
                return False
            self._mailboxes.add(mailbox)
            self._unclosed.add(mailbox)
            return True

    def discard(self, mailbox: Mailbox) -> None:
        """Give back the slot of a stream whose loop ended."""
        with self._lock:
            self._mailboxes.discard(mailbox)

    def closed(self, mailbox: Mailbox) -> None:
        """Forget a stream whose response the server closed (also one never read)."""
        with self._lock:
            self._mailboxes.discard(mailbox)
            self._unclosed.discard(mailbox)

    def open_responses(self) -> int:
        """Return how many stream responses the server has not closed yet."""
        return len(self._unclosed)

    def reopen(self) -> None:
        """Accept streams again after ``end_all()`` (a server that serves on in the same process)."""
        self._closing = False

    def end_all(self, reason: EndReason) -> int:
        """Ask every open stream to finish; refuse new ones. Return how many were asked."""
        with self._lock:
            self._closing = True
            mailboxes = list(self._mailboxes)
        for mailbox in mailboxes:
            mailbox.end(reason)
        return len(mailboxes)

    def __len__(self) -> int:
        return len(self._mailboxes)
