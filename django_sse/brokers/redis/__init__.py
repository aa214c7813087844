"""The Redis brokers: one server (``broker``), Sentinel (``sentinel``) and Cluster (``cluster``, ``shard``).

``common`` holds what they share (the Lua scripts, publishing, history
reads), ``resp`` the subscriber's reader of the pub/sub connection, and
``url`` the parsing of ``SSE_REDIS_URL`` and the old settings dict.
Their log records go to the ``django_sse.brokers.redis`` logger and its children.
"""
