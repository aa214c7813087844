"""The servers the integration suites run against, and the one list of tests that cannot run on each.

A test (or a fixture it uses) that takes ``server_kind`` runs once per kind:
``servers.site(..., kind=server_kind)`` starts the test project on it.
Module-scoped fixtures that take it are built once per kind.

``SSE_TEST_SERVER_KINDS`` (e.g. ``gunicorn``) deselects the copies of the
other kinds: scripts/test sets it for the "part" combinations, whose uvicorn
copies would repeat those of the oldest and newest combinations.
"""

from __future__ import annotations

import os

#: "gunicorn": gunicorn's gevent worker (WSGI); "uvicorn": uvicorn with Django's get_asgi_application().
SERVER_KINDS = ["gunicorn", "uvicorn"]


def enabled_kinds() -> list[str]:
    """The kinds ``SSE_TEST_SERVER_KINDS`` (comma-separated) keeps; all when unset."""
    value = os.environ.get("SSE_TEST_SERVER_KINDS", "").strip()
    if not value:
        return list(SERVER_KINDS)
    kinds = [kind.strip() for kind in value.split(",")]
    unknown = sorted(set(kinds) - set(SERVER_KINDS))
    if unknown:
        raise ValueError(
            f"SSE_TEST_SERVER_KINDS names {unknown}; write a comma-separated subset of {SERVER_KINDS}."
        )
    return kinds


_MASTER = (
    "a gunicorn master's signal (HUP, TTIN) or setting (max_requests); uvicorn has no such master"
)

#: Tests that run under gunicorn only, with the reason they cannot apply to uvicorn.
GUNICORN_ONLY: dict[str, str] = {
    "test_hup_twice_ends_every_old_stream_cleanly_and_20_clients_get_the_complete_sequence": _MASTER,
    "test_max_requests_with_jitter_recycles_workers_and_resuming_clients_lose_nothing": _MASTER,
    "test_max_lifetime_moves_streams_to_a_worker_added_later": _MASTER,
    "test_a_stream_asked_of_a_stopping_worker_gets_a_retry_hint_rather_than_a_503": (
        "it needs a worker that stops while its siblings serve (gunicorn's HUP)"
    ),
    "test_an_async_can_read_channel_under_gevent_is_refused_naming_it": (
        "under ASGI the hook runs (the test above it)"
    ),
}


#: Tests that run under uvicorn only, with the reason they cannot apply to gunicorn's gevent worker.
ASGI_ONLY: dict[str, str] = {
    "test_an_async_can_read_channel_awaiting_request_auser_decides_at_open_and_on_recheck": (
        "a gevent worker refuses an async can_read_channel (its own test says so)"
    ),
}


def kinds_for(test_name: str) -> list[str]:
    """Return the server kinds the test named ``test_name`` (without parameters) runs on."""
    if test_name in GUNICORN_ONLY:
        return ["gunicorn"]
    if test_name in ASGI_ONLY:
        return ["uvicorn"]
    return list(SERVER_KINDS)


def deselect_disabled_kinds(config, items: list) -> None:
    """``pytest_collection_modifyitems``: deselect the copies of kinds ``SSE_TEST_SERVER_KINDS`` leaves out."""
    enabled = enabled_kinds()
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("server_kind") if callspec is not None else None
        (kept if kind is None or kind in enabled else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def parametrize_server_kind(metafunc) -> None:
    """``pytest_generate_tests``: parametrise ``server_kind`` (module-scoped, so shared fixtures are per kind)."""
    if "server_kind" not in metafunc.fixturenames:
        return
    metafunc.parametrize("server_kind", kinds_for(metafunc.function.__name__), scope="module")
