"""Short plain-text error responses for refused streams."""

from __future__ import annotations

from django.http import HttpResponse


def _plain(reason: str, status: int) -> HttpResponse:
    return HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")


def bad_request(reason: str) -> HttpResponse:
    return _plain(reason, 400)


def forbidden(reason: str) -> HttpResponse:
    return _plain(reason, 403)
