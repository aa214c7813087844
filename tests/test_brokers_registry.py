"""Broker selection (``brokers.registry``): one mapping, classes that build and check themselves."""

from __future__ import annotations

import pytest
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_sse import checks
from django_sse.brokers import registry
from django_sse.brokers.memory import MemoryBroker
from django_sse.brokers.redis.broker import RedisBroker
from django_sse.brokers.redis.cluster import RedisClusterBroker
from django_sse.conf import DEFAULTS, Setting, Settings, sse_settings
from django_sse.core import runtime

REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, MemoryBroker),
        ({"SSE_REDIS_URL": REDIS}, RedisBroker),
        ({"SSE_REDIS_SENTINELS": ["s1:26379"], "SSE_REDIS_SENTINEL_SERVICE": "m"}, RedisBroker),
        ({"SSE_REDIS_URL": REDIS, "SSE_REDIS_CLUSTER": True}, RedisClusterBroker),
        ({"SSE_REDIS_URL": REDIS, "SSE_BROKER": "memory"}, MemoryBroker),
    ],
)
def test_the_settings_select_one_class(overrides, expected):
    """SSE_BROKER and the Redis settings pick the class in one place."""
    with override_settings(**{"SSE_REDIS_URL": None, **overrides}):
        assert registry.broker_class(sse_settings) is expected


def test_build_broker_raises_the_check_messages():
    """A broker that cannot be built raises ImproperlyConfigured with the system check's id and words."""
    with override_settings(SSE_BROKER="redis", SSE_REDIS_URL=None):
        with pytest.raises(ImproperlyConfigured, match="django_sse.E022"):
            runtime.build_broker()
    with override_settings(SSE_BROKER="rabbitmq"):
        with pytest.raises(ImproperlyConfigured, match="django_sse.E020"):
            runtime.build_broker()


def test_a_registered_broker_is_built_and_checked(monkeypatch):
    """A new broker is one entry in BROKERS: it builds itself and its checks reach manage.py check."""

    class Fake(MemoryBroker):
        @classmethod
        def from_settings(cls, settings: Settings) -> Fake:
            return cls(maxlen=1, ttl=1)

        @classmethod
        def check(cls, settings: Settings) -> list[django_checks.CheckMessage]:
            return [django_checks.Warning("fake", id="django_sse.W999")]

    monkeypatch.setattr("tests.test_brokers_registry.Fake", Fake, raising=False)
    monkeypatch.setitem(registry.BROKERS, "memory", "tests.test_brokers_registry.Fake")

    assert isinstance(runtime.build_broker(), Fake)
    assert [message.id for message in checks.check_broker()] == ["django_sse.W999"]


def test_every_default_is_a_typed_setting():
    """Settings has one typed attribute per DEFAULTS entry, and reads the default when unset."""
    names = {name for name, value in vars(Settings).items() if isinstance(value, Setting)}
    assert names == set(DEFAULTS)
    with override_settings(SSE_QUEUE_SIZE=7):
        assert sse_settings.SSE_QUEUE_SIZE == 7
    assert sse_settings.SSE_QUEUE_SIZE == DEFAULTS["SSE_QUEUE_SIZE"] or sse_settings.is_set(
        "SSE_QUEUE_SIZE"
    )
