"""The package as users install it: its files, its metadata, and a plain gunicorn serving it.

``scripts/test`` installs the wheel it built into each venv and runs the suite
from a copy of the checkout without ``django_sse/`` (``conftest.py`` refuses
any other ``django_sse``), so these tests see exactly what ``pip install``
gives a site.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import django_sse
from tests.support.redis_helpers import connect, get_stats, wait_position
from tests.support.servers import REPO_TOP

pytestmark = pytest.mark.integration


def test_the_installed_distribution_has_the_packages_version_and_supported_django():
    """The installed metadata carries __version__ and admits the Django that is installed."""
    import django
    from packaging.requirements import Requirement

    metadata = importlib.metadata.metadata("django-sse")
    requires = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    [django_requirement] = [r for r in requires if r.name.lower() == "django"]

    assert metadata["Version"] == django_sse.__version__
    assert django_requirement.specifier.contains(django.__version__)
    assert f"Framework :: Django :: {django.VERSION[0]}.{django.VERSION[1]}" in metadata.get_all(
        "Classifier"
    )


@pytest.mark.parametrize("name", ["publish.lua", "read.lua"])
def test_the_lua_scripts_the_redis_broker_runs_are_installed(name):
    """The broker's scripts are package data next to the installed broker module."""
    text = resources.files("django_sse.brokers.redis").joinpath(name).read_text(encoding="utf-8")

    assert "redis.call" in text
    assert Path(django_sse.__file__).parent == Path(resources.files("django_sse"))  # type: ignore[arg-type]


def test_the_browser_client_is_installed_where_staticfiles_finds_it(settings):
    """django_sse/static/django_sse/eventsource.js ships in the wheel; the app finder serves it."""
    from django.contrib.staticfiles import finders

    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "django.contrib.staticfiles"]
    found = finders.find("django_sse/eventsource.js")
    text = resources.files("django_sse").joinpath("static/django_sse/eventsource.js").read_text()

    assert found is not None and Path(found).is_relative_to(Path(django_sse.__file__).parent)
    assert "export function connect(" in text and "navigator.locks" in text


def test_plain_gunicorn_serves_replay_from_the_installed_package(servers, redis_url, tmp_path):
    """gunicorn -k gevent -c /dev/null: the worker runs the installed package, send_event from a shell gives ids, a reconnect replays."""
    gunicorn = servers.gunicorn(env={"DJANGO_SSE_TEST_REDIS_URL": redis_url})
    stats = get_stats(gunicorn.port)
    client = connect(gunicorn.port, "/events/shipped/")
    start = wait_position(client)
    client.close()  # the client goes away; three events are published meanwhile

    ids = []
    for n in range(3):
        result = subprocess.run(
            [sys.executable, "-m", "django", "send_event", "shipped", "n", str(n)],
            cwd=REPO_TOP,
            env={
                "PATH": "/usr/bin:/bin",
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DJANGO_SSE_TEST_REDIS_URL": redis_url,
                "PYTHONPATH": str(REPO_TOP),
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        ids.append(result.stdout.strip())
    resumed = connect(gunicorn.port, "/events/shipped/", last_event_id=start)
    try:
        events = resumed.read_events(3, timeout=15)
    finally:
        resumed.close()

    assert Path(stats["django_sse_file"]) == Path(django_sse.__file__)
    assert [event.data for event in events] == ["0", "1", "2"]
    assert [event.last_event_id for event in events] == ids
    assert all(event_id.count("-") == 1 for event_id in ids)
