"""Tests of the system checks for the library's settings (``django_sse.checks``)."""

from __future__ import annotations

import logging
import os

import pytest
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_sse import checks
from django_sse.brokers.postgres import checks as postgres_checks
from django_sse.brokers.redis import checks as redis_checks
from django_sse.conf import DEFAULTS, sse_settings
from tests.support.redis_helpers import eventually
from tests.support.servers import ServerError
from tests.support.sse import SseClient

REDIS = "redis://localhost:6379/0"
MANAGER = "django_sse.permissions.ChannelManager"
SENTINEL = {
    "SSE_REDIS_SENTINELS": ["s1:26379", "s2:26379"],
    "SSE_REDIS_SENTINEL_SERVICE": "mymaster",
}


def case(id_, check, bad, setting, example, good, label=None):
    """``bad`` fires ``id_`` naming ``setting``; the hint shows ``example``; ``good`` fixes it."""
    return pytest.param(id_, check, bad, setting, example, good, id=label or f"{id_}-{bad!r}"[:60])


def check_postgres():
    """The PostgreSQL broker's rules, on the current settings."""
    return postgres_checks.check_postgres(sse_settings)


SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
POSTGRES = {
    "SSE_BROKER": "postgres",
    "DATABASES": {"default": SQLITE, "events": {"ENGINE": "django.db.backends.postgresql"}},
    "SSE_POSTGRES_DATABASE": "events",
}


def check_sentinel():
    """The Sentinel rules of the Redis broker, on the current settings."""
    return redis_checks.check_sentinel(sse_settings)


def number(id_, setting, value, example, good):
    return case(id_, checks.check_numbers, {setting: value}, setting, example, {setting: good})


CASES = [
    number("E001", "SSE_HEARTBEAT_INTERVAL", 0, "e.g. 15", 15),
    number("E001", "SSE_HEARTBEAT_INTERVAL", -1, "e.g. 15", 15),
    number("E001", "SSE_HEARTBEAT_INTERVAL", "15", "e.g. 15", 15),
    number("E001", "SSE_HEARTBEAT_INTERVAL", True, "e.g. 15", 15),
    number("E001", "SSE_HEARTBEAT_INTERVAL", None, "e.g. 15", 0.5),
    number("E002", "SSE_RETRY", -1, "e.g. 2000", 2000),
    number("E002", "SSE_RETRY", 1.5, "or None", None),
    number("E002", "SSE_RETRY", "2000", "e.g. 2000", 0),
    number("E003", "SSE_PUBLISH_TIMEOUT", 0, "e.g. 5", 5),
    number("E003", "SSE_PUBLISH_TIMEOUT", None, "e.g. 5", 0.1),
    number("E004", "SSE_QUEUE_SIZE", 0, "e.g. 2000", 2000),
    number("E004", "SSE_QUEUE_SIZE", 100.0, "e.g. 2000", 100),
    number("E005", "SSE_HISTORY_MAXLEN", 0, "e.g. 10000", 10000),
    number("E064", "SSE_POSTGRES_POLL_INTERVAL", 0, "e.g. 1", 0.5),
    number("E065", "SSE_POSTGRES_CLEANUP_INTERVAL", "10", "e.g. 10", 10),
    case("E060", check_postgres, {**POSTGRES, "SSE_POSTGRES_DATABASE": "missing"},
         "SSE_POSTGRES_DATABASE", "DATABASES", POSTGRES),
    case("E060", check_postgres, {**POSTGRES, "SSE_POSTGRES_DATABASE": None},
         "SSE_POSTGRES_DATABASE", "DATABASES", POSTGRES),
    case("E061", check_postgres, {**POSTGRES, "SSE_POSTGRES_DATABASE": "default"},
         "SSE_POSTGRES_DATABASE", "'django.db.backends.postgresql'", POSTGRES),
    case("E063", check_postgres, {"SSE_POSTGRES_LISTEN_OPTIONS": "host=db-primary"},
         "SSE_POSTGRES_LISTEN_OPTIONS", "{'host': 'db-primary'",
         {"SSE_POSTGRES_LISTEN_OPTIONS": {"host": "db-primary"}}),
    number("E053", "SSE_STREAM_BUFFER_BYTES", 0, "4 MiB", 4 * 1024 * 1024),
    number("E053", "SSE_STREAM_BUFFER_BYTES", None, "bytes", 65536),
    number("E053", "SSE_STREAM_BUFFER_BYTES", "4MB", "e.g. 4194304", 1),
    number("E006", "SSE_HISTORY_TTL", -1, "0: no age limit", 0),
    number("E006", "SSE_HISTORY_TTL", None, "0: no age limit", 3600),
    number("E007", "SSE_MAX_STREAMS", 0, "or None", None),
    number("E007", "SSE_MAX_STREAMS", 1.5, "a positive integer", 1),
    number("E008", "SSE_MAX_LIFETIME", 0, "or None", None),
    number("E008", "SSE_MAX_LIFETIME", "1h", "seconds", 3600),
    number("E009", "SSE_MAX_CHANNELS", 0, "e.g. 20", 20),
    number("E010", "SSE_MAX_CHANNEL_LENGTH", 0, "e.g. 200", 200),
    number("E011", "SSE_MAX_EVENT_SIZE", 0, "or None", None),
    number("E011", "SSE_MAX_EVENT_SIZE", "1MB", "bytes", 1_048_576),
    number("E012", "SSE_RETRY_JITTER", -0.1, "e.g. 0.5", 0),
    number("E012", "SSE_RETRY_JITTER", None, "0: no spread", 0.25),
    number("E044", "SSE_PUBLISH_REPLICAS", -1, "a non-negative integer", 1),
    number("E044", "SSE_PUBLISH_REPLICAS", True, "0: don't wait", 0),
    number("E044", "SSE_PUBLISH_REPLICAS", "1", "a non-negative integer", 2),
    number("E044", "SSE_PUBLISH_REPLICAS", 1.0, "a non-negative integer", 2),
    number("E013", "SSE_MAX_STREAMS_PER_USER", 0, "e.g. 10", None),
    number("E013", "SSE_MAX_STREAMS_PER_USER", "3", "or None", 3),
    number("E014", "SSE_PRESENCE_INTERVAL", 0, "e.g. 2", 2.0),
    number("E014", "SSE_PRESENCE_INTERVAL", None, "seconds", 0.3),
    case("E020", checks.check_broker, {"SSE_BROKER": "rabbitmq"}, "SSE_BROKER", "'memory'",
         {"SSE_BROKER": "memory"}),
    case("E021", checks.check_broker, {"SSE_REDIS_URL": "localhost:6379"}, "SSE_REDIS_URL",
         REDIS, {"SSE_REDIS_URL": REDIS}),
    case("E021", checks.check_broker, {"SSE_REDIS_URL": 6379}, "SSE_REDIS_URL", REDIS,
         {"SSE_REDIS_URL": "unix:///run/redis.sock"}),
    case("E022", checks.check_broker, {"SSE_BROKER": "redis", "SSE_REDIS_URL": None},
         "SSE_BROKER", f"SSE_REDIS_URL = '{REDIS}'",
         {"SSE_BROKER": "redis", "SSE_REDIS_URL": REDIS}),
    case("E023", checks.check_broker, {"SSE_REDIS_PREFIX": b"sse:"}, "SSE_REDIS_PREFIX", "'sse:'",
         {"SSE_REDIS_PREFIX": "sse:"}),
    case("E024", checks.check_broker,
         {"REDIS_SSEQUEUE_CONNECTION_SETTINGS": {"host": "localhost"}, "SSE_REDIS_URL": None},
         "REDIS_SSEQUEUE_CONNECTION_SETTINGS", "'location': 'localhost:6379'",
         {"REDIS_SSEQUEUE_CONNECTION_SETTINGS": {"location": "localhost:6379", "db": 0},
          "SSE_REDIS_URL": None}),
    case("E024", checks.check_broker,
         {"REDIS_SSEQUEUE_CONNECTION_SETTINGS": {"location": "localhost"}, "SSE_REDIS_URL": None},
         "REDIS_SSEQUEUE_CONNECTION_SETTINGS", "'location': 'localhost:6379'",
         {"REDIS_SSEQUEUE_CONNECTION_SETTINGS": {"location": "unix:/run/redis.sock"},
          "SSE_REDIS_URL": None}, label="E024-location-without-port"),
    case("E030", checks.check_channels, {"SSE_DEFAULT_CHANNEL": "my channel"},
         "SSE_DEFAULT_CHANNEL", "e.g. 'sse'", {"SSE_DEFAULT_CHANNEL": "sse"}),
    case("E030", checks.check_channels, {"REDIS_SSEQUEUE_CHANEL_NAME": ""},
         "REDIS_SSEQUEUE_CHANEL_NAME", "e.g. 'sse'", {"REDIS_SSEQUEUE_CHANEL_NAME": "sse"}),
    case("E031", checks.check_channels, {"SSE_EPHEMERAL_CHANNELS": "typing-*"},
         "SSE_EPHEMERAL_CHANNELS", "['typing-*']", {"SSE_EPHEMERAL_CHANNELS": ["typing-*"]}),
    case("E031", checks.check_channels, {"SSE_EPHEMERAL_CHANNELS": ["typing-*", 3]},
         "SSE_EPHEMERAL_CHANNELS", "['typing-*']", {"SSE_EPHEMERAL_CHANNELS": ("typing-*",)}),
    case("E034", checks.check_channels, {"SSE_LATEST_VALUE_CHANNELS": "prices"},
         "SSE_LATEST_VALUE_CHANNELS", "['prices', 'status-*']",
         {"SSE_LATEST_VALUE_CHANNELS": ["prices"]}),
    case("E032", checks.check_channels, {"SSE_HISTORY": "yes"}, "SSE_HISTORY", "True or False",
         {"SSE_HISTORY": False}),
    case("E033", checks.check_channels, {"SSE_RESET_EVENT": "reset\ndata: forged"},
         "SSE_RESET_EVENT", "'stream-reset'", {"SSE_RESET_EVENT": "stream-reset"}),
    case("E033", checks.check_channels, {"SSE_RESET_EVENT": ""}, "SSE_RESET_EVENT",
         "'stream-reset'", {"SSE_RESET_EVENT": "reset"}),
    case("E040", checks.check_channel_manager, {"SSE_CHANNEL_MANAGER": "tests.nowhere.Manager"},
         "SSE_CHANNEL_MANAGER", "ChannelManager subclass", {"SSE_CHANNEL_MANAGER": MANAGER}),
    case("E040", checks.check_channel_manager, {"SSE_CHANNEL_MANAGER": "NoDots"},
         "SSE_CHANNEL_MANAGER", "ChannelManager subclass", {"SSE_CHANNEL_MANAGER": None}),
    case("E041", checks.check_channel_manager, {"SSE_CHANNEL_MANAGER": "tests.views.plain"},
         "SSE_CHANNEL_MANAGER", "Subclass django_sse.permissions.ChannelManager",
         {"SSE_CHANNEL_MANAGER": MANAGER}),
    case("E042", check_sentinel, {"SSE_REDIS_SENTINELS": "s1:26379"},
         "SSE_REDIS_SENTINELS", "['sentinel-1:26379'", {**SENTINEL, "SSE_REDIS_SENTINELS": ["s1:26379"]}),
    case("E042", check_sentinel, {**SENTINEL, "SSE_REDIS_SENTINELS": ["s1"]},
         "SSE_REDIS_SENTINELS", "'host:port' strings", SENTINEL),
    case("E042", check_sentinel, {**SENTINEL, "SSE_REDIS_SENTINELS": ("s1:0",)},
         "SSE_REDIS_SENTINELS", "'host:port' strings", {**SENTINEL, "SSE_REDIS_SENTINELS": ("[::1]:26379",)}),
    case("E042", check_sentinel, {**SENTINEL, "SSE_REDIS_SENTINELS": [26379]},
         "SSE_REDIS_SENTINELS", "'host:port' strings", SENTINEL),
    case("E042", check_sentinel, {**SENTINEL, "SSE_BROKER": "memory"},
         "SSE_BROKER", "SSE_BROKER = 'redis'", {**SENTINEL, "SSE_BROKER": "redis"}),
    case("E042", check_sentinel, {**SENTINEL, "SSE_REDIS_URL": "unix:///run/redis.sock"},
         "SSE_REDIS_URL", "'redis://:PASSWORD@SERVICE/0'",
         {**SENTINEL, "SSE_REDIS_URL": "redis://:secret@mymaster/0"}),
    case("E043", check_sentinel, {"SSE_REDIS_SENTINELS": ["s1:26379"]},
         "SSE_REDIS_SENTINEL_SERVICE", "'mymaster'", SENTINEL),
    case("E043", check_sentinel, {"SSE_REDIS_SENTINEL_SERVICE": "mymaster"},
         "SSE_REDIS_SENTINEL_SERVICE", "['sentinel-1:26379']", SENTINEL),
    case("E043", check_sentinel, {**SENTINEL, "SSE_REDIS_SENTINEL_SERVICE": ""},
         "SSE_REDIS_SENTINEL_SERVICE", "'mymaster'", SENTINEL),
    case("E043", check_sentinel, {**SENTINEL, "SSE_REDIS_SENTINEL_PASSWORD": 1234},
         "SSE_REDIS_SENTINEL_PASSWORD", "or None", {**SENTINEL, "SSE_REDIS_SENTINEL_PASSWORD": "1234"}),
    case("E050", checks.check_cors, {"SSE_CORS_ALLOWED_ORIGINS": "https://app.example.com"},
         "SSE_CORS_ALLOWED_ORIGINS", "['https://app.example.com']",
         {"SSE_CORS_ALLOWED_ORIGINS": ["https://app.example.com"]}),
    case("E050", checks.check_cors, {"SSE_CORS_ALLOWED_ORIGINS": ["app.example.com"]},
         "SSE_CORS_ALLOWED_ORIGINS", "'https://app.example.com'",
         {"SSE_CORS_ALLOWED_ORIGINS": ["https://app.example.com:8443"]}),
    case("E050", checks.check_cors, {"SSE_CORS_ALLOWED_ORIGINS": ["https://app.example.com/"]},
         "SSE_CORS_ALLOWED_ORIGINS", "trailing slash",
         {"SSE_CORS_ALLOWED_ORIGINS": ("*",)}),
    case("E051", checks.check_cors, {"SSE_CORS_ALLOW_CREDENTIALS": "true"},
         "SSE_CORS_ALLOW_CREDENTIALS", "True or False", {"SSE_CORS_ALLOW_CREDENTIALS": True}),
    case("E052", checks.check_cors, {"SSE_CORS_ALLOWED_HEADERS": "last-event-id"},
         "SSE_CORS_ALLOWED_HEADERS", "['last-event-id']",
         {"SSE_CORS_ALLOWED_HEADERS": ["last-event-id"]}),
]  # fmt: skip


@pytest.mark.parametrize(("id_", "check", "bad", "setting", "example", "good"), CASES)
def test_bad_setting_fires_its_check_naming_the_setting_with_a_hint(
    id_, check, bad, setting, example, good
):
    """Each bad value gives one error with its id, naming the setting; the hint's advice passes."""
    with override_settings(**bad):
        messages = check()
    with override_settings(**good):
        fixed = check()

    assert [message.id for message in messages] == [f"django_sse.{id_}"]
    [message] = messages
    assert isinstance(message, Error)
    assert setting in message.msg
    assert example in message.hint
    assert fixed == []


@pytest.mark.parametrize("setting", sorted(checks._NUMBERS))
def test_number_errors_show_the_wrong_value(setting):
    """A number check's message shows the value it refused."""
    with override_settings(**{setting: "wrong"}):
        [message] = checks.check_numbers()

    assert "'wrong'" in message.msg
    assert message.hint.startswith(f"Set {setting} to ")


def test_every_number_setting_has_a_check():
    """Every numeric default is covered by check_numbers, under its own id."""
    numeric = {
        name
        for name, value in DEFAULTS.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    ids = [id_ for id_, *_ in checks._NUMBERS.values()]

    assert numeric <= set(checks._NUMBERS)
    assert len(ids) == len(set(ids))


def test_defaults_pass_every_check():
    """The documented defaults give no message from any check."""
    with override_settings(**DEFAULTS):
        messages = [message for check in checks.ALL_CHECKS for message in check()]
        messages += checks.check_memory_broker_workers(1)

    assert messages == []


def test_test_project_settings_pass_every_check():
    """tests/settings.py, as the servers of the suite use it, gives no message."""
    assert [message for check in checks.ALL_CHECKS for message in check()] == []


def test_checks_are_registered_with_django():
    """manage.py check passes with good settings and fails with SystemCheckError on a bad one."""
    call_command("check", verbosity=0)

    with override_settings(SSE_HEARTBEAT_INTERVAL=-1):
        with pytest.raises(SystemCheckError) as info:
            call_command("check", verbosity=0)

    assert "django_sse.E001" in str(info.value)
    assert "SSE_HEARTBEAT_INTERVAL is -1" in str(info.value)


def test_startup_checks_raise_improperly_configured_on_a_bad_setting():
    """run_startup_checks() raises ImproperlyConfigured with the message and hint of every error."""
    with override_settings(SSE_HEARTBEAT_INTERVAL=-1, SSE_QUEUE_SIZE=0):
        with pytest.raises(ImproperlyConfigured) as info:
            checks.run_startup_checks()

    text = str(info.value)
    assert "django_sse.E001" in text and "SSE_HEARTBEAT_INTERVAL" in text
    assert "django_sse.E004" in text and "SSE_QUEUE_SIZE" in text
    assert "Set SSE_HEARTBEAT_INTERVAL to a positive number of seconds" in text


def test_startup_checks_pass_with_good_settings(caplog):
    """run_startup_checks() returns quietly with the test project's settings and one worker."""
    caplog.set_level(logging.WARNING, logger="django_sse")

    assert checks.run_startup_checks(workers=1) is None
    assert [r for r in caplog.records if r.name.startswith("django_sse")] == []


def test_memory_broker_with_two_workers_warns(caplog):
    """With the in-process broker and workers=2, W001 is logged and start-up goes on."""
    caplog.set_level(logging.WARNING, logger="django_sse")
    with override_settings(SSE_BROKER="memory"):
        [warning] = checks.check_memory_broker_workers(2)
        single = checks.check_memory_broker_workers(1)
        checks.run_startup_checks(workers=2)

    assert isinstance(warning, Warning)
    assert warning.id == "django_sse.W001"
    assert "2 workers" in warning.msg
    assert "SSE_REDIS_URL" in warning.hint
    assert single == []
    [record] = [r for r in caplog.records if r.name == "django_sse.checks"]
    assert record.levelno == logging.WARNING
    assert "django_sse.W001" in record.getMessage()


def test_redis_broker_with_two_workers_does_not_warn():
    """W001 is only for the in-process broker."""
    with override_settings(SSE_BROKER=None, SSE_REDIS_URL=REDIS):
        assert checks.check_memory_broker_workers(2) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("config", "extra_args"),
    [(os.devnull, []), (os.devnull, ["--preload"]), ("gunicorn.conf.py", [])],
    ids=["no config", "no config, --preload", "gunicorn.conf.py"],
)
def test_gunicorn_refuses_to_start_with_a_bad_setting(servers, config, extra_args):
    """With a bad setting, gunicorn exits at start-up printing the message, whatever its config."""
    with pytest.raises(ServerError) as info:
        servers.gunicorn(
            env={"DJANGO_SSE_TEST_BAD_SETTING": "1"}, config=config, extra_args=extra_args
        )

    text = str(info.value)
    assert "exited" in text
    assert "django_sse.E001" in text
    assert "SSE_HEARTBEAT_INTERVAL is -1" in text


def _warnings_logged(server) -> list[str]:
    """Return each django_sse warning the server logged, with its hint."""
    text = server.stderr_text(50000)
    return [
        part.split("\n\n")[0] for part in text.split("?: (")[1:] if part.startswith("django_sse.W")
    ]


@pytest.mark.integration
def test_gunicorn_defaults_warn_once_per_worker_about_worker_connections(servers):
    """Plain -k gevent (worker_connections 1000 < SSE_MAX_STREAMS): W003 once per worker, naming the option to pass."""
    server = servers.gunicorn(workers=2)
    for _ in range(3):  # streams do not repeat the warning
        with SseClient.connect(server.port, "/ticks/?interval=0.05") as client:
            client.read_events(1)

    def w003() -> list[str]:
        return [w for w in _warnings_logged(server) if w.startswith("django_sse.W003)")]

    eventually(lambda: len(w003()) >= 2)  # each worker logs it once it has loaded Django
    warnings = w003()
    assert len(warnings) == 2, warnings
    assert "worker_connections is 1000" in warnings[0]
    assert "HINT: Run gunicorn with --worker-connections 21000" in warnings[0]


@pytest.mark.integration
def test_gunicorn_with_enough_worker_connections_and_gevent_warns_nothing(servers):
    """--worker-connections above SSE_MAX_STREAMS with the gevent worker: no django_sse warning."""
    server = servers.gunicorn(extra_args=["--worker-connections", "21000"])
    with SseClient.connect(server.port, "/ticks/?interval=0.05") as client:
        client.read_events(1)

    assert _warnings_logged(server) == []


@pytest.mark.integration
def test_gunicorn_sync_worker_warns_that_streams_hold_the_worker(servers):
    """-k sync: W002 names the worker class and the fix, at start-up before any stream."""
    server = servers.gunicorn(extra_args=["--worker-class", "sync"])

    [warning] = _warnings_logged(server)
    assert warning.startswith("django_sse.W002)")
    assert "gunicorn.workers.sync.SyncWorker" in warning
    assert "HINT: Run gunicorn with -k gevent" in warning


def test_worker_config_warnings_follow_sse_max_streams():
    """W003 compares worker_connections with SSE_MAX_STREAMS, None meaning no limit."""
    from gunicorn.workers.ggevent import GeventWorker

    from django_sse.servers.gunicorn import worker_config_warnings

    class Cfg:
        timeout = 30

    worker = GeventWorker.__new__(GeventWorker)
    worker.cfg = Cfg()
    worker.worker_connections = 5000
    with override_settings(SSE_MAX_STREAMS=4000):
        assert worker_config_warnings(worker) == []
    with override_settings(SSE_MAX_STREAMS=5000):
        [same] = worker_config_warnings(worker)
    with override_settings(SSE_MAX_STREAMS=None):
        [unlimited] = worker_config_warnings(worker)

    assert same.id == unlimited.id == "django_sse.W003"
    assert "--worker-connections 6000" in same.hint
    assert "allows no limit" in unlimited.msg
