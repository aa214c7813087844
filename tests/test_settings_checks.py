"""Settings that check used to pass in silence: a misspelt ``SSE_*`` name (W004), an empty SSE_REDIS_URL (E021)."""

from __future__ import annotations

import logging

import pytest
from django.core import checks as django_checks
from django.core.management import call_command

from django_sse.checks import run_startup_checks


def _messages(id_: str) -> list[django_checks.CheckMessage]:
    return [m for m in django_checks.run_checks(tags=["django_sse"]) if m.id == id_]


@pytest.mark.parametrize(
    ("misspelt", "closest"),
    [
        ("SSE_REDIS_CHANNEL", "SSE_REDIS_SENTINELS"),  # difflib's closest, not a guess at intent
        ("SSE_HEARTBEAT", "SSE_HEARTBEAT_INTERVAL"),
        ("SSE_REDIS_ULR", "SSE_REDIS_URL"),
        ("SSE_CHANNELS_MANAGER", "SSE_CHANNEL_MANAGER"),
    ],
)
def test_an_unknown_sse_setting_is_w004_naming_the_closest_real_one(settings, misspelt, closest):
    setattr(settings, misspelt, "x")

    [warning] = _messages("django_sse.W004")

    assert warning.level == django_checks.WARNING
    assert warning.msg == f"{misspelt} is not a django-sse setting; the closest one is {closest}."
    assert "another app" in warning.hint
    assert "SILENCED_SYSTEM_CHECKS = ['django_sse.W004']" in warning.hint


def test_an_unknown_sse_setting_like_no_real_one_names_none(settings):
    settings.SSE_QQ = 1

    [warning] = _messages("django_sse.W004")

    assert warning.msg == "SSE_QQ is not a django-sse setting."


def test_known_settings_and_other_prefixes_are_not_w004(settings):
    settings.SSE_HEARTBEAT_INTERVAL = 5
    settings.REDIS_SSEQUEUE_CHANEL_NAME = "old"  # the old name: known
    settings.MY_SSE_THING = 1  # not an SSE_ name

    assert _messages("django_sse.W004") == []


def test_w004_is_a_warning_check_passes_and_it_can_be_silenced(settings, capsys):
    """check still passes (a warning); silenced, it is not shown; a worker logs it at start."""
    settings.SSE_REDIS_CHANNEL = "x"
    call_command("check")
    assert "django_sse.W004" in capsys.readouterr().err

    settings.SILENCED_SYSTEM_CHECKS = ["django_sse.W004"]
    call_command("check")
    assert "django_sse.W004" not in capsys.readouterr().err


def test_a_worker_logs_w004_at_start(settings, caplog):
    settings.SSE_REDIS_CHANNEL = "x"

    with caplog.at_level(logging.WARNING, logger="django_sse"):
        run_startup_checks()

    assert "SSE_REDIS_CHANNEL is not a django-sse setting" in caplog.text


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_redis_url_says_none_selects_the_in_process_broker(settings, empty):
    """The environment-variable pattern with the variable unset: E021's hint tells what to write."""
    settings.SSE_REDIS_URL = empty

    [error] = _messages("django_sse.E021")

    assert "None (the default) for the in-process broker" in error.hint
    assert "os.environ.get('REDIS_URL') or None" in error.hint


def test_a_wrong_redis_url_hint_does_not_speak_of_none(settings):
    settings.SSE_REDIS_URL = "localhost:6379"

    [error] = _messages("django_sse.E021")

    assert "in-process" not in error.hint
