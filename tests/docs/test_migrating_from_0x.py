"""docs/migrating/django-sse-0.x.rst: the settings of django-sse 0.x still configure Redis.

Samples are looked up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

from django_sse import checks
from django_sse.conf import sse_settings
from tests.support.doc_pages import pages_tested_by
from tests.support.readme_samples import Samples, track

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

LEGACY_SETTINGS = SAMPLES.find("python", "REDIS_SSEQUEUE_CONNECTION_SETTINGS")


def test_legacy_settings_sample_still_configures_redis(settings):
    """REDIS_SSEQUEUE_CONNECTION_SETTINGS from 0.x becomes the Redis URL, and passes the checks."""
    namespace: dict = {}
    exec(compile(LEGACY_SETTINGS.code, "<django-sse-0.x.rst legacy settings>", "exec"), namespace)
    settings.REDIS_SSEQUEUE_CONNECTION_SETTINGS = namespace["REDIS_SSEQUEUE_CONNECTION_SETTINGS"]
    assert sse_settings.redis_url == "redis://localhost:6379/0"
    assert sse_settings.broker_name == "redis"
    assert [message for check in checks.ALL_CHECKS for message in check()] == []


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
