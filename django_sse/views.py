"""``BaseSseView``: a class-based view that streams Server-Sent Events."""

from __future__ import annotations

import inspect
import logging
import random
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views import View

from . import metrics, servers
from . import sse as encoder
from .conf import sse_settings
from .core.concurrency import AsyncTask, Task
from .core.database import release_connections
from .core.mailbox import END, EndReason, Mailbox
from .core.registry import Refusal
from .core.runtime import streams
from .permissions import user_key
from .sse import Sse
from .stream import asgi as asgi_stream
from .stream import wsgi as wsgi_stream
from .stream.cors import add_cors_headers, preflight
from .stream.engine import HEARTBEAT, Blocking
from .stream.producer import arun_iterator, run_iterator

__all__ = ["HEARTBEAT", "BaseSseView", "Blocking", "SseResponse", "overrides"]

logger = logging.getLogger(__name__)

_MAX_LAST_EVENT_ID = 1024


class SseResponse(StreamingHttpResponse):
    """A never-buffered ``text/event-stream`` response."""

    def __init__(self, streaming_content: Any = (), *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "text/event-stream; charset=utf-8")
        super().__init__(streaming_content, *args, **kwargs)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: do not buffer this response
        self._on_close: Callable[[], None] | None = None
        self._end_stream: Callable[[], None] | None = None
        self._join_stream: Callable[[float], bool] | None = None

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the server closes the response (after its last chunk)."""
        self._on_close = callback

    def bind_stream(self, end: Callable[[], None], join: Callable[[float], bool]) -> None:
        """Let ``end_stream()`` and ``join_stream()`` reach the stream (the view does this)."""
        self._end_stream = end
        self._join_stream = join

    def end_stream(self) -> None:
        """Ask the stream to end, as if its client had gone (from any thread)."""
        if self._end_stream is not None:
            self._end_stream()

    def join_stream(self, timeout: float) -> bool:
        """After ``close()``: wait until the stream's producer has finished; return whether it has.

        ``iterator()``'s ``finally:`` has run then. A producer thread
        (outside gevent) stops at its next ``yield``.
        """
        return self._join_stream is None or self._join_stream(timeout)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._on_close is not None:
                self._on_close()


class BaseSseView(View):
    """Stream the events that ``iterator()`` buffers in ``self.sse``, one write per ``yield``.

    Override ``iterator()``, a generator: call ``self.sse.add_message(...)``
    and ``yield``. The stream also sends a comment every
    ``heartbeat_interval`` seconds when nothing else went out, even while
    ``iterator()`` is blocked, and closes the generator (running its
    ``finally:``) once the client has gone.
    """

    http_method_names = ["get", "head", "options"]
    #: Seconds of silence before a heartbeat comment; None reads ``SSE_HEARTBEAT_INTERVAL``.
    heartbeat_interval: float | None = None
    #: Reconnection delay (ms) sent when the stream opens; None reads ``SSE_RETRY``.
    retry: int | None = None
    #: Seconds after which the stream ends so the client reconnects; None reads ``SSE_MAX_LIFETIME``.
    max_lifetime: float | None = None

    #: Each step of the stream and the hooks it calls (see ``blocking_steps()``).
    step_hooks: tuple[tuple[Blocking, tuple[str, ...]], ...] = (
        (Blocking.OPENING, ("start", "opening", "get_initial_events")),
        (Blocking.RENDER, ("render",)),
        (Blocking.IDLE, ("idle",)),
        (Blocking.CLOSING, ("closing",)),
        (Blocking.STOP, ("stop",)),
    )

    sse: Sse
    #: The id the reconnecting client last saw (None when absent or unusable).
    last_event_id: str | None
    #: Whether the client sent a Last-Event-ID at all, usable or not.
    last_event_id_sent: bool

    def setup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)
        self.sse = Sse()
        self.last_event_id = self.get_last_event_id()

    def get_max_last_event_id_length(self) -> int:
        """Return the longest ``Last-Event-ID`` accepted (default 1024 characters)."""
        return _MAX_LAST_EVENT_ID

    def get_last_event_id(self) -> str | None:
        """Return the id the reconnecting client last saw, or None.

        Read from the ``Last-Event-ID`` header, or the ``lastEventId`` query
        parameter that EventSource polyfills use. Values that no server could
        have sent (longer than ``get_max_last_event_id_length()``, or holding
        CR, LF or NUL) are treated as absent; ``last_event_id_sent`` still
        tells that the client sent one.
        """
        meta = self.request.META
        value = meta.get("HTTP_LAST_EVENT_ID")
        if value is None and "lastEventId" in meta.get("QUERY_STRING", ""):
            value = self.request.GET.get("lastEventId")
        self.last_event_id_sent = bool(value)
        if not value or len(value) > self.get_max_last_event_id_length():
            return None
        try:
            encoder.validate_event_id(value)
        except ValueError:
            return None
        return value

    def get_heartbeat_interval(self) -> float:
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return sse_settings.SSE_HEARTBEAT_INTERVAL

    def get_retry(self) -> int | None:
        """Return the reconnection delay (ms) sent when the stream opens, or None for none."""
        return self.retry if self.retry is not None else sse_settings.SSE_RETRY

    def get_retry_jitter(self) -> float:
        """Return how far the retry hint of a shed stream is spread (``SSE_RETRY_JITTER``).

        A stream ended by shutdown or its lifetime, or refused by a stopping
        worker, is told to wait a random delay between ``get_retry()`` and
        ``get_retry() * (1 + jitter)``, so that its clients do not all come
        back in the same instant. 0 sends ``get_retry()`` itself.
        """
        return sse_settings.SSE_RETRY_JITTER

    def get_max_lifetime(self) -> float | None:
        if self.max_lifetime is not None:
            return self.max_lifetime
        return sse_settings.SSE_MAX_LIFETIME

    def iterator(self) -> Generator[Any, Any, Any] | AsyncGenerator[Any, Any]:
        """Buffer messages in ``self.sse`` and ``yield`` to send them. Override this.

        A generator runs in a greenlet under gevent and in a thread of its
        own elsewhere (``runserver``, ASGI). Under ASGI ``async def
        iterator()`` (an async generator) runs on the event loop instead, as
        an asyncio task: no thread per stream, but it must not block (the one
        hook that runs on the loop: see "The hook rule" below). Pitfall:
        an async ``iterator()`` needs an ASGI server; under WSGI the stream
        is refused with ``ImproperlyConfigured``.
        """
        raise self._no_iterator()

    @property
    def iterator_is_async(self) -> bool:
        """Whether ``iterator()`` is an async generator (``async def`` with ``yield``)."""
        return inspect.isasyncgenfunction(type(self).iterator)

    @property
    def asynchronous(self) -> bool:
        """Whether the stream runs on an event loop: the request came through Django's ASGI handler."""
        return isinstance(self.request, ASGIRequest)

    def _no_iterator(self) -> ImproperlyConfigured:
        return ImproperlyConfigured(
            f"{type(self).__name__} requires an implementation of 'iterator()'."
        )

    # Request handling -------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return add_cors_headers(request, self.open_stream())

    def head(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Answer with the stream's headers and no body."""
        refusal = self.check_request()
        return add_cors_headers(request, refusal if refusal is not None else self._fixed(b""))

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Answer ``OPTIONS``, and CORS preflights from allowed origins."""
        return preflight(request, super().options(request, *args, **kwargs))

    def open_stream(self) -> HttpResponseBase:
        """Return the streaming response, or the 4xx/503 that refuses it."""
        refusal = self.check_request()
        if refusal is not None:
            metrics.record_stream_refused(self._metrics_name(), refusal.status_code)
            return refusal
        cls = type(self)
        if cls.start is BaseSseView.start and cls.iterator is BaseSseView.iterator:
            raise self._no_iterator()  # before the response starts: Django's error page
        asynchronous = self.asynchronous
        if self.iterator_is_async and not asynchronous:
            raise ImproperlyConfigured(
                f"{cls.__name__}.iterator() is an async generator, which needs an ASGI server "
                "(uvicorn, daphne); under WSGI make it a plain generator (def, not async def)."
            )
        servers.stream_opening(self.request.META, asynchronous)
        mailbox = Mailbox(
            sse_settings.SSE_QUEUE_SIZE,
            owner=self.get_owner(),
            asynchronous=asynchronous,
            max_bytes=sse_settings.SSE_STREAM_BUFFER_BYTES,
        )
        refused = streams.add(
            mailbox, sse_settings.SSE_MAX_STREAMS, sse_settings.SSE_MAX_STREAMS_PER_USER
        )
        if refused is Refusal.CLOSING:
            return self.stopping()
        if refused is Refusal.FULL:
            metrics.record_stream_refused(self._metrics_name(), 503)
            return self.unavailable()
        if refused is Refusal.USER_FULL:
            metrics.record_stream_refused(self._metrics_name(), 429)
            return self.too_many_streams()
        # Compressing a stream would buffer it and cost a zlib state per client.
        self.request.META.pop("HTTP_ACCEPT_ENCODING", None)
        if asynchronous:
            release_connections()  # this thread's; the stream runs on the event loop
            response = SseResponse(asgi_stream.stream(self, mailbox, self._metrics_name()))
            if self.get_max_lifetime() is not None:
                # An ASGI app cannot close its connection once the response started:
                # say so now, so that the reconnection after the lifetime goes elsewhere.
                response["Connection"] = "close"
            # Django drops a response it never sent (the client left while the view
            # ran) without closing it: give its slot back when it is collected.
            # Detached once closed: the registry would keep the mailbox, and what
            # it references, alive until the response is collected.
            dropped = weakref.finalize(response, streams.closed, mailbox)

            def closed() -> None:
                dropped.detach()
                streams.closed(mailbox)

            response.on_close(closed)
        else:
            stream = wsgi_stream.stream(self, mailbox, self.request.META, self._metrics_name())
            response = SseResponse(stream)
            # Forgotten once the server closes the response, after its last chunk (also
            # when it is closed before it is ever read): a graceful stop waits for that.
            response.on_close(lambda: streams.closed(mailbox))
        response.bind_stream(lambda: mailbox.end(EndReason.CLIENT_GONE), self.join_producer)
        return response

    def check_request(self) -> HttpResponse | None:
        """Return an error response that refuses the stream, or None to open it."""
        return None

    def _metrics_name(self) -> str:
        """The ``view`` label of this stream's metrics: the URL pattern's name, else the view's path."""
        match = getattr(self.request, "resolver_match", None)
        if match is not None and match.url_name:
            return str(match.url_name)
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    def get_owner(self) -> str | None:
        """Return who this stream serves (the user's pk), so permission changes can reach it."""
        return user_key(getattr(self.request, "user", None))

    def unavailable(self) -> HttpResponse:
        response = HttpResponse(
            "This server holds as many streams as SSE_MAX_STREAMS allows.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = "5"
        return response

    def too_many_streams(self) -> HttpResponse:
        """Answer 429 to a user who holds ``SSE_MAX_STREAMS_PER_USER`` streams in this process.

        Pitfall: ``EventSource`` does not retry after a 429; the page learns it
        from the ``error`` event (``readyState`` CLOSED) and may tell the user
        to close a tab.
        """
        limit = sse_settings.SSE_MAX_STREAMS_PER_USER
        response = HttpResponse(
            f"You have {limit} streams open here, as many as SSE_MAX_STREAMS_PER_USER allows.\n",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = "5"
        return response

    def stopping(self) -> HttpResponseBase:
        """Answer a stream asked of a process that is shutting down: a retry hint, then the end.

        A 503 would make EventSource give up for good; this way the client
        reconnects (on a new connection: the stopping server closes this one)
        to a worker that serves, resuming from its ``Last-Event-ID``.
        """
        return self._fixed(self._retry_hint(spread=True))

    def _fixed(self, chunk: bytes) -> SseResponse:
        """Return a stream response whose body is ``chunk`` (async content under ASGI, for Django)."""
        if self.asynchronous:
            return SseResponse(_one_chunk(chunk))
        return SseResponse([chunk] if chunk else [])

    def _retry_hint(self, spread: bool = False) -> bytes:
        """Return the ``retry:`` field for ``get_retry()`` (spread: jittered), or nothing for None."""
        retry = self.get_retry()
        if retry is None:
            return b""
        if spread and retry:
            retry = round(retry * random.uniform(1.0, 1.0 + self.get_retry_jitter()))
        return encoder.encode_retry(retry).encode()

    # The stream -------------------------------------------------------------
    #
    # The hook rule, the same under every server: under WSGI (gevent, threads)
    # every hook runs in the stream's greenlet or thread. Under ASGI every hook
    # a subclass overrides runs off the event loop, in the runtime's executor
    # (an ``async def iterator()`` excepted: it runs on the loop, and so does
    # the start() that starts it); the library's own defaults run on the loop,
    # except the steps ``blocking_steps()`` declares.

    def opening(self) -> bytes:
        """Return the first chunk, sent as soon as the stream opens (so onopen fires).

        Default: the retry hint and a comment. Under ASGI an override runs off
        the event loop (see ``blocking_steps()``).
        """
        return self._retry_hint() + HEARTBEAT

    def get_initial_events(self) -> Iterable[tuple[str, Any]]:
        """Return the ``(event, data)`` pairs a new client gets first (default: none).

        Override to send the current state before live events, e.g.
        ``[("state", {"count": Counter.objects.count()})]``; data that is not
        a string is sent as JSON, as by ``send_event``. Called only for a
        client that brings no ``Last-Event-ID`` (a reconnecting one has the
        state and is replayed what it missed). ``RedisQueueView`` calls it
        once the stream is subscribed and its start is fixed: every event
        published after that follows these, so update your state before you
        ``send_event``; an event published while this runs may show in both.
        An override runs off the event loop under ASGI, so the ORM works.
        """
        return ()

    def _initial_chunk(self) -> bytes:
        """Return ``get_initial_events()`` encoded as events (no ids)."""
        return "".join(
            encoder.encode_event(event, encoder.encode_data(data))
            for event, data in self.get_initial_events()
        ).encode()

    def _opening_initial(self) -> bytes:
        """Return what follows the opening for a new client: its initial events."""
        return b"" if self.last_event_id_sent else self._initial_chunk()

    def opening_chunk(self) -> bytes:
        """Return the stream's first write: ``opening()`` and, for a new client, its initial events.

        Not a hook (the stream engine calls it): override ``opening()`` or
        ``get_initial_events()``.
        """
        return self.opening() + self._opening_initial()

    def start(self, mailbox: Mailbox) -> None:
        """Start producing into ``mailbox``: by default, run ``iterator()`` beside the stream.

        Override to feed the mailbox from elsewhere (``RedisQueueView`` attaches
        to the hub) and ``stop()`` with it. Under ASGI an override runs off the
        event loop, unless ``iterator()`` is ``async def``. Pitfall: it runs
        once the response has started, so it cannot refuse the stream
        (``check_request()`` can).
        """
        # Called here, not in the pump, so that a missing iterator() fails the request.
        iterator = self.iterator()
        owner = type(self).__name__
        if isinstance(iterator, AsyncGenerator):
            self._pump: Task | AsyncTask = AsyncTask(
                arun_iterator(iterator, self.sse, mailbox, owner)
            )
        else:
            self._pump = Task(run_iterator, iterator, self.sse, mailbox, owner)

    def stop(self) -> None:
        """Release what ``start()`` took; called once, whenever the stream ends.

        Under ASGI an override runs off the event loop, after the response
        has ended (nothing waits for it).
        """
        self._pump.kill()

    def join_producer(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for what ``start()`` started; return whether it ended."""
        pump = getattr(self, "_pump", None)
        if pump is None:
            return True
        pump.join(timeout)
        return not pump.alive

    def render(self, items: list[Any], mailbox: Mailbox) -> list[bytes]:
        """Turn the items taken from the mailbox into the chunks to write, one write each.

        By default every ``yield`` of ``iterator()`` is one write. Under ASGI
        an override runs off the event loop, a thread hop per write: pitfall,
        the hot path then costs more than the default's.
        """
        chunks = []
        for item in items:
            if item is END:
                mailbox.end(EndReason.SOURCE_FINISHED)
            else:
                chunks.append(item)
        return chunks

    def idle(self, mailbox: Mailbox) -> bytes:
        """Return what to send after a heartbeat interval of silence (default: nothing).

        Nothing means a heartbeat comment. Under ASGI an override runs off
        the event loop.
        """
        return b""

    def closing(self, mailbox: Mailbox) -> bytes:
        """Return the last chunk of a stream the server ends (a retry hint by default).

        Shed by shutdown or lifetime, the hint is spread (``get_retry_jitter()``).
        Under ASGI an override runs off the event loop.
        """
        reason = mailbox.end_reason
        return self._retry_hint(spread=reason is not None and reason.sheds_connection)

    def blocking_steps(self, items: list[Any]) -> Blocking:
        """Return the steps of the stream that may block, for the items just taken.

        The one place a view declares what an event loop must run in a thread
        (``items`` is ``[]`` outside a render); WSGI ignores it. By default:
        every hook a subclass overrides, and the opening of a plain
        ``iterator()``, which starts a thread. Override only to declare more
        (call ``super()``); pitfall: what it leaves out runs on the loop and
        stalls every stream of the process while it blocks.
        """
        steps = overridden_steps(type(self), BaseSseView)
        if not self.iterator_is_async:
            steps |= Blocking.OPENING
        return steps


def overridden_steps(cls: type[BaseSseView], library: type[BaseSseView]) -> Blocking:
    """Return the steps whose hooks ``cls`` overrides, relative to the ``library`` class it extends.

    A step's hooks are the ones ``library.step_hooks`` lists for it. Cached
    per class: the stream asks at every write.
    """
    key = (cls, library)
    steps = _overridden.get(key)
    if steps is None:
        steps = Blocking.NONE
        for step, names in library.step_hooks:
            if any(getattr(cls, name) is not getattr(library, name) for name in names):
                steps |= step
        _overridden[key] = steps
    return steps


_overridden: dict[tuple[type, type], Blocking] = {}


async def _one_chunk(chunk: bytes) -> AsyncIterator[bytes]:
    if chunk:
        yield chunk


def overrides(view: BaseSseView, base: type, *names: str) -> bool:
    """Whether ``view``'s class replaces any of ``base``'s methods ``names`` (with user code)."""
    cls = type(view)
    return any(getattr(cls, name) is not getattr(base, name) for name in names)
