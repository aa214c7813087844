"""The streams of one process: counted for the limit, ended together at shutdown."""

from __future__ import annotations

from enum import Enum

from .concurrency import new_lock
from .mailbox import EndReason, Mailbox


class Refusal(Enum):
    """Why ``StreamRegistry.add()`` refused a stream."""

    FULL = "full"  # SSE_MAX_STREAMS streams are open in this process
    USER_FULL = "user full"  # the stream's owner holds SSE_MAX_STREAMS_PER_USER of them
    CLOSING = "closing"  # the process is shutting down


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
        self._per_owner: dict[str, int] = {}  # open streams of each owner (users only)
        self._lock = new_lock()
        self._closing = False

    @property
    def closing(self) -> bool:
        """Whether the process is shutting down (``end_all()`` was called)."""
        return self._closing

    def add(
        self, mailbox: Mailbox, limit: int | None, per_owner: int | None = None
    ) -> Refusal | None:
        """Register ``mailbox``; return why it is refused, or None when it is taken.

        ``limit`` bounds every stream of the process, ``per_owner`` those of
        the mailbox's owner (a stream without an owner is bounded by ``limit`` only).
        """
        owner = mailbox.owner
        with self._lock:
            if self._closing:
                return Refusal.CLOSING
            if limit is not None and len(self._mailboxes) >= limit:
                return Refusal.FULL
            if owner is not None:
                held = self._per_owner.get(owner, 0)
                if per_owner is not None and held >= per_owner:
                    return Refusal.USER_FULL
                self._per_owner[owner] = held + 1
            self._mailboxes.add(mailbox)
            self._unclosed.add(mailbox)
            return None

    def discard(self, mailbox: Mailbox) -> None:
        """Give back the slot of a stream whose loop ended."""
        with self._lock:
            self._forget(mailbox)

    def closed(self, mailbox: Mailbox) -> None:
        """Forget a stream whose response the server closed (also one never read)."""
        with self._lock:
            self._forget(mailbox)
            self._unclosed.discard(mailbox)

    def held_by(self, owner: str) -> int:
        """Return how many open streams ``owner`` holds in this process."""
        return self._per_owner.get(owner, 0)

    def _forget(self, mailbox: Mailbox) -> None:
        if mailbox not in self._mailboxes:
            return
        self._mailboxes.discard(mailbox)
        owner = mailbox.owner
        if owner is not None:
            held = self._per_owner.get(owner, 0) - 1
            if held > 0:
                self._per_owner[owner] = held
            else:
                self._per_owner.pop(owner, None)

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
