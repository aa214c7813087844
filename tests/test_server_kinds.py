"""SSE_TEST_SERVER_KINDS: which server copies of the parametrised suites a run keeps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.server_kinds import deselect_disabled_kinds, enabled_kinds


def _item(kind: str | None) -> SimpleNamespace:
    callspec = None if kind is None else SimpleNamespace(params={"server_kind": kind})
    return SimpleNamespace(callspec=callspec, kind=kind)


def test_unset_keeps_every_kind(monkeypatch):
    monkeypatch.delenv("SSE_TEST_SERVER_KINDS", raising=False)
    assert enabled_kinds() == ["gunicorn", "uvicorn"]


def test_a_kind_left_out_is_deselected_and_reported_not_skipped(monkeypatch):
    monkeypatch.setenv("SSE_TEST_SERVER_KINDS", "gunicorn")
    reported = []
    config = SimpleNamespace(
        hook=SimpleNamespace(pytest_deselected=lambda items: reported.extend(items))
    )
    items = [_item("gunicorn"), _item("uvicorn"), _item(None)]

    deselect_disabled_kinds(config, items)

    assert [item.kind for item in items] == ["gunicorn", None]
    assert [item.kind for item in reported] == ["uvicorn"]


def test_an_unknown_kind_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("SSE_TEST_SERVER_KINDS", "gunicorn,hypercorn")
    with pytest.raises(ValueError, match="hypercorn"):
        enabled_kinds()
