"""docs/guides/testing.rst: its pytest test and its TestCase, run and shown to fail when they should.

Samples are looked up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import pytest

from tests.support.django_runner import run_django_tests
from tests.support.doc_pages import pages_tested_by
from tests.support.readme_samples import Samples, track

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

TESTING_SAMPLE = SAMPLES.find("python", "# tests/test_news.py")
TESTCASE_SAMPLE = SAMPLES.find("python", "class ClubStreamTests(TestCase)")


def test_testing_sample_is_a_passing_test_that_fails_when_the_event_does_not_come(client):
    """The guide's test of a RedisQueueView passes; with the publish taken out it fails in time."""
    from django_sse.testing import StreamTimeout

    namespace: dict = {}
    exec(compile(TESTING_SAMPLE.code, "<testing.rst tests/test_news.py>", "exec"), namespace)
    namespace["test_news_stream"](client)

    broken = TESTING_SAMPLE.code.replace('send_event("update", {"n": 1}, channel="news")', "pass")
    assert broken != TESTING_SAMPLE.code
    exec(compile(broken, "<testing.rst, without the publish>", "exec"), namespace)
    with pytest.raises(StreamTimeout):  # its own timeout: the test ends, it does not hang
        namespace["test_news_stream"](client)


@pytest.mark.integration
def test_the_testcase_sample_passes_under_djangos_runner_and_leaves_the_database_usable(
    tmp_path,
):
    """The testing guide's TestCase, then a test that uses the database, under ``manage.py test``."""
    module = tmp_path / "club_sample.py"
    module.write_text(
        TESTCASE_SAMPLE.code
        + "\n\nclass ZNextTests(TestCase):\n"
        + "    def test_the_database_is_clean_and_usable(self):\n"
        + "        self.assertEqual(User.objects.count(), 0)\n"
        + "        User.objects.create_user('next')\n",
        encoding="utf-8",
    )
    result = run_django_tests("club_sample", tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ran 2 tests" in result.stderr


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
