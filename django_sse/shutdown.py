"""Ending a worker's streams cleanly when its server stops it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .registry import streams

logger = logging.getLogger(__name__)


def end_streams(reason: str = "server shutdown") -> int:
    """End every stream of this process with a retry hint; refuse new ones."""
    count = streams.end_all(reason)
    if count:
        logger.info("Ending %d stream(s): %s.", count, reason)
    return count


def end_streams_when_stopping(worker: Any, poll: float = 0.2) -> None:
    """Watch a gunicorn worker and end its streams once ``worker.alive`` turns false."""

    def watch() -> None:
        while worker.alive:
            time.sleep(poll)
        end_streams()

    threading.Thread(target=watch, name="django-sse-shutdown", daemon=True).start()
