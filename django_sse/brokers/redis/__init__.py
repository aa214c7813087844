"""The Redis brokers: one server (``broker``), Sentinel (``sentinel``) and Cluster (``cluster``, ``shard``).

``common`` holds what they share (the Lua scripts, publishing, history
reads), ``subscriber`` the single-node pub/sub connection (redis-py's,
read in batches), ``checks`` the settings' rules, and ``url`` the parsing
of ``SSE_REDIS_URL`` and the old settings dict.
Their log records go to the ``django_sse.brokers.redis`` logger and its children.
"""
