"""The Django project under test: RedisQueueView streams and a stats view, served by gunicorn or uvicorn."""

import gc
import os


def apply_bench_gc() -> None:
    """Apply ``BENCH_GC``: garbage-collector settings tried without touching the library.

    ``freeze`` moves everything allocated at start-up out of the collector's
    reach (``gc.freeze()``), ``off`` disables it, a number sets the
    generation-0 threshold. Unset (the default): nothing changes.
    """
    setting = os.environ.get("BENCH_GC", "")
    if setting == "freeze":
        gc.freeze()
    elif setting == "off":
        gc.disable()
    elif setting.isdigit():
        gc.set_threshold(int(setting), *gc.get_threshold()[1:])
