"""One stream from its opening to its end, and the drivers that write it to a server.

``asgi`` drives a stream on an event loop; ``connection`` watches a WSGI
client's socket; ``cors`` and ``responses`` are the headers and refusals a
stream view answers with.
"""
