"""The one way the tests wait for something: poll until it holds, fail after a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    timeout: float = 10,
    interval: float = 0.1,
    until: Callable[[T], object] | None = None,
    what: str = "",
) -> T:
    """Call ``check()`` every ``interval`` s; return its first value that holds.

    A value holds when it is true, or, given ``until``, when ``until(value)``
    is. After ``timeout`` s raise AssertionError naming ``what`` and showing
    the last value (so ``until`` lets a failure show what was polled, e.g.
    the whole /stats/).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if until(value) if until is not None else value:
            return value
        if time.monotonic() > deadline:
            subject = f"Not {what}" if what else "Still"
            raise AssertionError(f"{subject} after {timeout} s: {value!r}")
        time.sleep(interval)
