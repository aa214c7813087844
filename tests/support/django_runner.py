"""Run test modules with Django's own runner (``python -m django test``) in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_TOP = Path(__file__).resolve().parents[2]


def run_django_tests(module: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """Run ``module``'s tests on the test settings (memory broker), ``paths`` first on sys.path."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("DJANGO_SSE_TEST_REDIS_URL", None)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO_TOP)])
    return subprocess.run(
        [sys.executable, "-m", "django", "test", module, "-v", "2"],
        env=env,
        cwd=REPO_TOP,
        capture_output=True,
        text=True,
        timeout=120,
    )
