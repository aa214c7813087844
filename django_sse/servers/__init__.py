"""What the library knows of the servers that run it: gunicorn and its workers, uvicorn, daphne, runserver.

``gunicorn`` finds the worker of this process and ends its streams when it
stops; ``asgi`` does the same for uvicorn and daphne; ``detect`` warns about
servers that block a thread per stream; ``http1`` is the request recogniser
of the library's own worker (``django_sse.worker``).
"""
