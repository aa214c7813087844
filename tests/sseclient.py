"""The raw-socket client of event streams; it lives in ``tests.support.sse``."""

from tests.support.sse import Headers, SseClient, StreamEnded, streams_on_every_worker

__all__ = ["Headers", "SseClient", "StreamEnded", "streams_on_every_worker"]
