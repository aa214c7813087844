"""``django.test.TestCase`` tests of a logged-in stream, run by Django's own runner (``manage.py test``).

``test_testing.py`` runs ``python -m django test tests.testcase_streams``
in a subprocess: each test's transaction, and the database the next test
finds, must survive a stream read with ``django_sse.testing``. (pytest does
not collect this module: its name does not start with ``test_``.)
"""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.test import TestCase, override_settings

from django_sse import channel_permission_changed, send_event
from django_sse.testing import StreamTimeout, memory_broker, sse_stream


@memory_broker()
@override_settings(ROOT_URLCONF="tests.testing_urls")
class LoggedInStreamTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = User.objects.create_user("ann")
        cls.user.groups.add(Group.objects.create(name="club"))

    def test_a_member_reads_the_channel_and_the_transaction_goes_on(self):
        """A stream whose can_read_channel queries the database; the test's queries go on after it."""
        self.client.force_login(self.user)
        with sse_stream(self.client, "/member/club/") as stream:
            send_event("news", "1", channel="club")
            [event] = stream.read_events(1)
        self.assertEqual(event.data, "1")
        User.objects.create_user("bob")
        self.assertEqual(User.objects.count(), 2)

    def test_a_revoked_member_loses_the_stream(self):
        """The recheck reads the session and the groups again, in the test's transaction."""
        self.client.force_login(self.user)
        with sse_stream(self.client, "/member/club/") as stream:
            self.user.groups.clear()
            channel_permission_changed(self.user, "club")
            with self.assertRaisesMessage(StreamTimeout, "it ended"):
                stream.read_events(1)
        self.assertFalse(Group.objects.get(name="club").user_set.exists())

    def test_a_stranger_is_refused(self):
        """Refused before the stream opens, after the query."""
        self.client.force_login(User.objects.create_user("eve"))
        response = self.client.get("/member/club/", HTTP_ACCEPT="text/event-stream")
        self.assertEqual(response.status_code, 403)


class NextTests(TestCase):
    """Runs after ``LoggedInStreamTests`` (the runner orders a module's classes by name)."""

    def test_the_next_test_finds_an_empty_database(self):
        """The streams' tests were rolled back, and this test's queries work."""
        self.assertFalse(User.objects.exists())
        User.objects.create_user("carol")
        self.assertEqual(User.objects.count(), 1)
