"""The heartbeat wheel: one task per interval wakes the streams that have been silent.

Streams wait without a timeout, so the hot path (an event arrives, it is
written) arms and cancels no timer. Every ``interval / 4`` the wheel looks at
its streams and pokes those that have written nothing for ``interval``
seconds; they send a comment, which keeps proxies from closing the
connection and reveals a vanished client. A stream with a maximum lifetime
is ended by the wheel when it expires.
"""

from __future__ import annotations

import time

from .concurrency import Task, new_lock, one_per_key, sleep
from .mailbox import EndReason, Mailbox

_MIN_TICK = 0.02


class HeartbeatWheel:
    """Pokes the idle mailboxes of one heartbeat interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._deadlines: dict[Mailbox, float | None] = {}
        self._task = Task(self._run, name=f"django-sse-heartbeat-{interval}")

    def add(self, mailbox: Mailbox, deadline: float | None) -> None:
        self._deadlines[mailbox] = deadline

    def discard(self, mailbox: Mailbox) -> None:
        self._deadlines.pop(mailbox, None)

    def __len__(self) -> int:
        return len(self._deadlines)

    def _run(self) -> None:
        tick = max(self.interval / 4, _MIN_TICK)
        while True:
            sleep(tick)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """End the expired streams and poke the silent ones, as of ``now``.

        A method of its own, so that between ticks the wheel's task holds no
        reference to the last mailbox it looked at (a stream that ended must
        be freed at once, not one tick later).
        """
        silent_since = now - self.interval
        for mailbox, deadline in list(self._deadlines.items()):
            if deadline is not None and now >= deadline:
                mailbox.end(EndReason.MAX_LIFETIME)
            elif mailbox.silent_since(silent_since):
                mailbox.poke_idle()


_wheels: dict[float, HeartbeatWheel] = {}
_lock = new_lock()


def wheel_for(interval: float) -> HeartbeatWheel:
    """Return this process's wheel for ``interval`` seconds, starting it on first use."""
    return one_per_key(_wheels, interval, _lock, lambda: HeartbeatWheel(interval))
