"""A test site with users: a migrated file database, logged-in users, and their session cookies.

``USERS_SETUP`` (run with ``django_command(env, "shell", "-c", USERS_SETUP)``)
makes alice and bob (groups "news" and "staff") and carol (no group), and
prints each one's primary key and session cookie; ``Site`` connects raw SSE
clients as them.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .servers import REPO_TOP, HttpServer, RedisServer
from .sse import SseClient

#: The channel manager of the site: ``user-<pk>`` channels and ``group-<name>`` ones.
MANAGER = "tests.channel_manager.UserChannels"

USERS_SETUP = """
import json
from django.contrib.auth.models import Group, User
from django.test import Client

news = Group.objects.create(name="news")
staff = Group.objects.create(name="staff")
users = {}
for name in ("alice", "bob", "carol"):
    user = User.objects.create_user(name)
    if name != "carol":
        user.groups.add(news, staff)
    client = Client()
    client.force_login(user)
    users[name] = {"pk": user.pk, "cookie": client.cookies["sessionid"].value}
print(json.dumps(users))
"""


#: Run in ``shell -c``: alice leaves group "news", and both users' streams of it are rechecked.
REVOKE_ALICE_FROM_NEWS = """
from django.contrib.auth.models import Group, User
from django_sse import channel_permission_changed

alice, bob = User.objects.get(username="alice"), User.objects.get(username="bob")
alice.groups.remove(Group.objects.get(name="news"))
channel_permission_changed(alice, "group-news")
channel_permission_changed(bob.pk, "group-news")  # unchanged: bob's streams must go on
"""


def run_python(env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> str:
    """Run ``python ARGS`` (after ``prefix``, e.g. ``ip netns exec``) with ``env`` added; return stdout."""
    result = subprocess.run(
        [*prefix, sys.executable, *args],
        env={**os.environ, **env},
        cwd=REPO_TOP,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def django_command(env: dict[str, str], *args: str) -> str:
    """Run ``python -m django ARGS`` for the site (its database, its Redis); return stdout."""
    return run_python(env, "-m", "django", *args)


class Site:
    """The running site: its server, its Redis, its users (pk and session cookie)."""

    def __init__(self, server: HttpServer, redis: RedisServer, env: dict, users: dict):
        self.server = server
        self.redis = redis
        self.env = env
        self.users = users

    def connect(self, path: str, user: str | None = None, **kwargs) -> SseClient:
        headers = {"Cookie": f"sessionid={self.users[user]['cookie']}"} if user else {}
        return SseClient.connect(self.server.port, path, headers=headers, **kwargs)

    def refusal(self, path: str, user: str | None = None) -> SseClient:
        client = self.connect(path, user)
        client.read_to_end()
        client.close()
        return client

    def channel(self, user: str) -> str:
        return f"user-{self.users[user]['pk']}"
