"""The spec parser the tests read streams with: the package's ``django_sse.eventstream``."""

from django_sse.eventstream import Event, ParseResult, SseParser, parse

__all__ = ["Event", "ParseResult", "SseParser", "parse"]
