"""The code samples of reST files, and which of them the tests of a module really used.

A test module makes one ``Samples`` of its files (``Samples(README, *pages)``:
the samples of all of them, looked up together), looks each sample up by a
marker it contains (``CLOCK = SAMPLES.find("python", "class ClockView")``,
at import, so that a marker that matches nothing fails at once), and reads
``CLOCK.code`` inside the tests that run it. ``track(SAMPLES)`` returns the
autouse fixture that attributes each read to the running test; a read counts
only once that test's call has passed: a read at import, in a test that fails or
is skipped, or in a test that did not run, does not count.
``SAMPLES.check(request)``, in the module's last test, fails for every
sample that no passing test read.
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: scripts/first_hour.py reads samples without pytest
    import pytest


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int
    file: str = ""  # the file's name, relative to the first file's folder

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}" if self.file else f"line {self.line}"


def read_blocks(text: str, file: str = "") -> list[Block]:
    """Return the ``.. code-block::`` directives of ``text``, dedented, in order."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)\.\. code-block:: *(\S+)\s*$", line)
        if not match:
            continue
        indent = len(match.group(1))
        body = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(match.group(2), code, number + 1, file))
    return blocks


@dataclass(frozen=True)
class Sample:
    """One sample of the file (or several identical copies of it), found by a marker."""

    samples: Samples
    language: str
    marker: str
    indices: tuple[int, ...]

    @property
    def code(self) -> str:
        """Return the sample's code, and record that the running test read it."""
        self.samples.record(self.indices)
        return self.samples.blocks[self.indices[0]].code

    @property
    def lines(self) -> list[int]:
        return [self.samples.blocks[i].line for i in self.indices]

    @property
    def where(self) -> str:
        """Where the (first copy of the) sample is: ``docs/tutorial.rst line 12``."""
        return self.samples.blocks[self.indices[0]].where


class Samples:
    """The code blocks of ``paths`` and, for each, the tests that read it."""

    def __init__(self, *paths: Path) -> None:
        self.paths = [Path(path) for path in paths]
        root = self.paths[0].parent
        self.blocks: list[Block] = [
            block
            for path in self.paths
            for block in read_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
        ]
        self.handles: list[Sample] = []
        self.running: str | None = None  # the nodeid of the running test
        self.pending: dict[str, set[int]] = {}  # read, not settled
        self.exercised: dict[int, set[str]] = {}  # by passed tests
        self.not_passed: dict[int, set[str]] = {}
        self.read_outside_tests: set[int] = set()
        self.plugin: object | None = None  # the pytest plugin of track()

    @property
    def names(self) -> str:
        return ", ".join(path.name for path in self.paths)

    def find(self, language: str, marker: str, copies: int = 1) -> Sample:
        """Return the sample in ``language`` that contains ``marker``; ``copies`` identical ones if asked."""
        found = tuple(
            i
            for i, block in enumerate(self.blocks)
            if block.language == language and marker in block.code
        )
        assert len(found) == copies, (
            f"{self.names} have {len(found)} {language} samples containing {marker!r}, not {copies}"
        )
        assert len({self.blocks[i].code for i in found}) == 1, (
            f"The {copies} {language} samples containing {marker!r} differ: "
            f"{[self.blocks[i].where for i in found]}"
        )
        sample = Sample(self, language, marker, found)
        self.handles.append(sample)
        return sample

    # What the fixtures of track() call.

    def record(self, indices: tuple[int, ...]) -> None:
        if self.running is None:
            self.read_outside_tests.update(indices)
        else:
            self.pending.setdefault(self.running, set()).update(indices)

    def start(self, nodeid: str) -> None:
        self.running = nodeid

    def stop(self) -> None:
        self.running = None

    def settle(self, nodeid: str, passed: bool) -> None:
        """Count the reads of test ``nodeid`` once its outcome is known."""
        ledger = self.exercised if passed else self.not_passed
        for index in self.pending.pop(nodeid, ()):
            ledger.setdefault(index, set()).add(nodeid)

    # The verdict.

    def unexercised(self) -> list[str]:
        """Describe every block that no passed test read, and why."""
        not_passed = {index: set(nodeids) for index, nodeids in self.not_passed.items()}
        for nodeid, indices in self.pending.items():  # no call phase: setup failed or skipped
            for index in indices:
                not_passed.setdefault(index, set()).add(nodeid)
        missing = []
        for index, block in enumerate(self.blocks):
            if index in self.exercised:
                continue
            where = f"{block.where} ({block.language})"
            if index in not_passed:
                names = sorted(nodeid.split("::")[-1] for nodeid in not_passed[index])
                missing.append(f"{where}: read only by tests that did not pass: {names}")
            elif index in self.read_outside_tests:
                missing.append(f"{where}: read only outside any test (at import?)")
            elif any(index in handle.indices for handle in self.handles):
                missing.append(f"{where}: looked up, but no test read it")
            else:
                missing.append(f"{where}: no test looks it up")
        return missing

    def check(self, request: pytest.FixtureRequest) -> None:
        """Fail for every sample that no passed test of this module read; call it from the module's last test."""
        module = request.module
        items = [item for item in request.session.items if getattr(item, "module", None) is module]
        assert items and items[-1] is request.node, (
            f"{request.node.name} must be the last test of {module.__name__}: "
            "it judges what the tests before it read"
        )
        defined = {
            name
            for name, value in vars(module).items()
            if name.startswith("test") and callable(value)
        }
        selected = {item.originalname for item in items}
        import pytest

        if defined - selected:
            pytest.skip(
                f"only meaningful when every test of the module runs; not selected: {sorted(defined - selected)}"
            )
        missing = self.unexercised()
        assert not missing, f"samples that no passing test exercised: {missing}"


class _Outcomes:
    """A pytest plugin: settle each test's reads when its call phase is reported."""

    def __init__(self, samples: Samples) -> None:
        self.samples = samples

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.samples.settle(report.nodeid, report.passed)


def track(samples: Samples):
    """Return the autouse fixture that attributes reads of ``samples`` to tests; assign it in the module."""
    import pytest

    @pytest.fixture(autouse=True)
    def readme_sample_reader(request):
        if samples.plugin is None:  # the first test: from now on, settle each test's reads
            samples.plugin = _Outcomes(samples)
            manager = request.config.pluginmanager
            manager.register(samples.plugin)
            request.config.add_cleanup(lambda: manager.unregister(samples.plugin))
        samples.start(request.node.nodeid)
        yield
        samples.stop()

    return readme_sample_reader


def sample_file(code: str) -> tuple[str, bool]:
    """Return the file a sample names on its first line, and whether it is added to the end.

    ``# myapp/views.py`` (or ``{# myapp/templates/page.html #}``) is the whole file;
    ``# mysite/settings.py (at the end ...)`` is added to the end of the file.
    """
    first = code.splitlines()[0]
    match = re.fullmatch(r"(?:# |\{# )([\w./-]+)( \(at the end[^)]*\))?(?: #\})?", first)
    assert match, f"the sample's first line names no file: {first!r}"
    return match.group(1), bool(match.group(2))


def write_sample(directory: Path, code: str) -> Path:
    """Write a sample into the file it names under ``directory`` (see ``sample_file``); return the file."""
    name, at_the_end = sample_file(code)
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if at_the_end:
        with path.open("a", encoding="utf-8") as file:
            file.write("\n" + code)
    else:
        path.write_text(code, encoding="utf-8")
    return path


class SampleModules:
    """Samples loaded as modules (``load("myapp.views", code)``), so that samples import each other.

    Missing parent packages are made empty; ``forget()`` removes every module loaded.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.loaded: list[str] = []

    def load(self, name: str, code: str) -> types.ModuleType:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            package = ".".join(parts[:depth])
            if package not in sys.modules:
                parent = types.ModuleType(package)
                parent.__path__ = []
                sys.modules[package] = parent
                self.loaded.append(package)
        module = types.ModuleType(name)
        module.__package__ = ".".join(parts[:-1])
        module.__file__ = f"<{self.origin} sample {name}>"
        sys.modules[name] = module
        self.loaded.append(name)
        exec(compile(code, module.__file__, "exec"), module.__dict__)
        return module

    def forget(self) -> None:
        for name in reversed(self.loaded):
            sys.modules.pop(name, None)
        self.loaded.clear()
