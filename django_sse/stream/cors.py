"""Cross-origin access to streams: nothing is allowed unless ``SSE_CORS_ALLOWED_ORIGINS`` says so."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers

from ..conf import sse_settings

_METHODS = "GET, HEAD, OPTIONS"


def origin_problem(origin: object) -> str | None:
    """Return why ``origin`` is not an origin like ``https://example.com:8443``, or None."""
    if not isinstance(origin, str):
        return "each origin must be a string"
    if origin == "*":
        return None
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{origin!r} needs a scheme and a host"
    if parts.path or parts.query or parts.fragment or origin.endswith("/"):
        return f"{origin!r} must have no path, query or trailing slash"
    return None


def allowed_origin(request: HttpRequest) -> str | None:
    """Return the value for ``Access-Control-Allow-Origin``, or None when not allowed."""
    origin = request.META.get("HTTP_ORIGIN")
    if origin is None:
        return None
    allowed = sse_settings.SSE_CORS_ALLOWED_ORIGINS
    if origin in allowed:
        return origin
    if "*" in allowed and not sse_settings.SSE_CORS_ALLOW_CREDENTIALS:
        return "*"
    return None


def add_cors_headers(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Add the CORS headers that let an allowed origin read ``response``."""
    origin = allowed_origin(request)
    if origin is None:
        return response
    response["Access-Control-Allow-Origin"] = origin
    if origin != "*":
        patch_vary_headers(response, ("Origin",))
    if sse_settings.SSE_CORS_ALLOW_CREDENTIALS:
        response["Access-Control-Allow-Credentials"] = "true"
    return response


def preflight(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Complete the answer to an ``OPTIONS`` preflight from an allowed origin."""
    if allowed_origin(request) is None or "HTTP_ACCESS_CONTROL_REQUEST_METHOD" not in request.META:
        return response
    response["Access-Control-Allow-Methods"] = _METHODS
    response["Access-Control-Allow-Headers"] = ", ".join(sse_settings.SSE_CORS_ALLOWED_HEADERS)
    response["Access-Control-Max-Age"] = "86400"
    return add_cors_headers(request, response)
