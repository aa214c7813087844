"""Sampling the serving process with py-spy while a scenario runs (``run.py --profile DIR``).

py-spy (``pip install py-spy``) writes collapsed stacks (``--format raw``);
``summarize()`` turns them into the functions that hold the most samples,
inclusive (on the stack) and exclusive (on top of it):

    python -m benchmarks.profiling DIR/idle-n10000-library.txt
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Sampler:
    """``py-spy record`` attached to one process until ``stop()``."""

    def __init__(self, pid: int, output: Path, rate: int = 250) -> None:
        binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(binary).exists():
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        self.output = output
        self.process = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.output


def summarize(path: str | Path, top: int = 25) -> str:
    """Return the ``top`` functions by inclusive and by exclusive share of the samples."""
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_short(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        exclusive[frames[-1]] += samples
    if not total:
        return "no samples"
    out = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        out.append(f"-- {title}")
        for frame, samples in counter.most_common(top):
            out.append(f"{100 * samples / total:5.1f}%  {frame}")
    return "\n".join(out)


def _short(frame: str) -> str:
    """``func (/path/site-packages/pkg/module.py:12)`` -> ``func (pkg/module.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
