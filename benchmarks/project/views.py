"""The benchmarked views: one channel per URL (``/stats/`` is ``tests.support.stats``)."""

from __future__ import annotations

from django_sse.redisqueue import RedisQueueView


class ChannelView(RedisQueueView):
    """Stream the channel named in the URL."""

    def get_redis_channel(self):
        return self.kwargs["channel"]
