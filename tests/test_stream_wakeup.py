"""``core.concurrency``'s one-waiter wake-up of a stream's mailbox, in a gevent-patched process.

The wake-up is only used where gevent has patched the process (a gevent
worker), so each check runs in a subprocess that patches first, as gunicorn's
gevent worker does, and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.servers import REPO_TOP

SCRIPT = r"""
from gevent import monkey
monkey.patch_all()

import json
import gevent
from gevent.exceptions import InvalidSwitchError
from django_sse.core.concurrency import new_stream_wakeup

seen = {}

# A set from another greenlet wakes the waiter; a flag already set returns at once.
wakeup = new_stream_wakeup()
seen["class"] = type(wakeup).__name__
waiter = gevent.spawn(wakeup.wait, 5)
gevent.sleep(0)
gevent.spawn(wakeup.set).join()
seen["woken"] = waiter.get(timeout=5)
seen["already_set"] = wakeup.wait(0)

# A wait that times out returns False; a later set switches into nothing stale.
wakeup = new_stream_wakeup()
seen["timed_out"] = gevent.spawn(wakeup.wait, 0.05).get(timeout=5)
wakeup.set()
gevent.sleep(0.05)
wakeup.clear()
seen["after_timeout_waits_again"] = gevent.spawn(wakeup.wait, 0.05).get(timeout=5)

# A waiter killed while waiting is never switched to again; the next waiter is woken.
wakeup = new_stream_wakeup()
killed = gevent.spawn(wakeup.wait, 5)
gevent.sleep(0)
killed.kill()
stray = []
blocked = gevent.spawn(lambda: stray.append(gevent.sleep(0.1)))
wakeup.set()
gevent.sleep(0.05)
seen["killed_is_dead"] = killed.dead
blocked.join()
seen["no_stray_switch"] = stray == [None]
wakeup.clear()
second = gevent.spawn(wakeup.wait, 5)
gevent.sleep(0)
wakeup.set()
seen["next_waiter_woken"] = second.get(timeout=5)

# Many sets before the waiter runs: one wake-up, no error.
wakeup = new_stream_wakeup()
waiter = gevent.spawn(wakeup.wait, 5)
gevent.sleep(0)
for _ in range(100):
    wakeup.set()
seen["many_sets_one_wake"] = waiter.get(timeout=5)

# The hub itself may not wait (a callback of its loop runs in the hub).
wakeup = new_stream_wakeup()
refused = []
def from_hub():
    try:
        wakeup.wait(0.01)
    except InvalidSwitchError as exc:
        refused.append(str(exc))
gevent.get_hub().loop.run_callback(from_hub)
gevent.sleep(0.05)
seen["hub_refused"] = refused
print(json.dumps(seen))
"""


def test_a_streams_wake_up_wakes_its_one_waiter_once_and_never_a_stale_one():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_TOP, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "class": "_StreamWakeup",
        "woken": True,
        "already_set": True,
        "timed_out": False,
        "after_timeout_waits_again": False,
        "killed_is_dead": True,
        "no_stray_switch": True,
        "next_waiter_woken": True,
        "many_sets_one_wake": True,
        "hub_refused": ["A stream's wake-up cannot be waited on from the hub."],
    }
