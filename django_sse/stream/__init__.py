"""One stream from its opening to its end, and the drivers that write it to a server.

``engine`` decides (the bytes of the opening, of each step and of the end,
the heartbeats, the metrics) and does no I/O; ``wsgi`` drives it from a
generator under WSGI and gevent, ``asgi`` from an async generator on an
event loop; ``producer`` runs a view's ``iterator()`` beside the stream;
``connection`` watches a WSGI client's socket; ``cors`` and ``responses``
are the headers and refusals a stream view answers with.
"""
