"""The example's settings with room for one stream per process: a second gets SSE_MAX_STREAMS's 503."""

from example.settings import *  # noqa: F403  (the example's, unchanged but for the limit)

SSE_MAX_STREAMS = 1
