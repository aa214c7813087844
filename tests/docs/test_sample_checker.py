"""The sample checker itself (tests/support/readme_samples.py) and the map of pages to the modules that run their samples.

Every page of docs/ and README.rst is mapped to one module
(tests/support/doc_pages.py) that reads exactly the pages mapped to it; every
Python sample of the pages of tests/docs/ compiles; the checker flags a sample
no lookup finds, and counts only reads by tests that passed.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from tests.support.doc_pages import TESTED_BY, doc_pages, pages_of_tests_docs
from tests.support.readme_samples import Samples, read_blocks
from tests.support.servers import REPO_TOP

PAGES_OF_TESTS_DOCS = Samples(*pages_of_tests_docs())  # compiled here, run by the other modules
TESTING_MODULES = sorted(set(TESTED_BY.values()))


def test_every_page_is_mapped_to_a_module_that_reads_it_and_no_other():
    """TESTED_BY names every page of docs/ and README.rst; each module's SAMPLES reads exactly the pages mapped to it."""
    assert set(TESTED_BY) == set(doc_pages())
    for name in TESTING_MODULES:
        mapped = {page for page, module in TESTED_BY.items() if module == name}
        assert set(importlib.import_module(name).SAMPLES.paths) == mapped, name


@pytest.mark.parametrize(
    "index", [i for i, block in enumerate(PAGES_OF_TESTS_DOCS.blocks) if block.language == "python"]
)
def test_every_python_sample_compiles(index):
    """Each Python sample is valid Python (compiling is not exercising: this reads no sample)."""
    block = PAGES_OF_TESTS_DOCS.blocks[index]
    compile(block.code, block.where, "exec")


EXTRA_BLOCK = "\n.. code-block:: python\n\n    print('a sample that no test runs')\n"


def test_the_checker_flags_a_sample_added_to_a_copy_of_the_pages(tmp_path):
    """Every block of a module's pages is found by a lookup of that module; a block added to a copy is flagged."""
    for name in TESTING_MODULES:
        tested = importlib.import_module(name).SAMPLES
        for extra, expected in (("", []), (EXTRA_BLOCK, ["(python): no test looks it up"])):
            copies = []
            for page in tested.paths:
                copy = tmp_path / page.relative_to(REPO_TOP)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
                copies.append(copy)
            with copies[-1].open("a", encoding="utf-8") as last_page:
                last_page.write(extra)
            samples = Samples(*copies)
            found = [samples.find(h.language, h.marker, len(h.indices)) for h in tested.handles]
            samples.start("test_reads_them_all")
            for sample in found:
                assert sample.code
            samples.stop()
            samples.settle("test_reads_them_all", passed=True)
            missing = samples.unexercised()
            assert [re.sub(r"^\S+ line \d+ ", "", m) for m in missing] == expected, name
            if extra:
                [added] = [block for block in samples.blocks if "no test runs" in block.code]
                assert missing[0].startswith(f"{added.where} ")
                assert added.file == str(copies[-1].relative_to(copies[0].parent))


TOY_README = """\
Toy
===

.. code-block:: python

    # read by a passing test

.. code-block:: python

    # read at import

.. code-block:: python

    # read by a failing test

.. code-block:: python

    # read by a skipped test

.. code-block:: python

    # looked up, never read

.. code-block:: python

    # looked up by nobody
"""


TOY_HEADER = """\
from pathlib import Path

import pytest

from tests.support.readme_samples import Samples, track

SAMPLES = Samples(Path(__file__).with_name("TOY.rst"))
readme_sample_reader = track(SAMPLES)
"""


TOY_MODULES = {
    # Every way a sample can go without a passing test that read it.
    "test_toy_gaps.py": TOY_HEADER
    + """
PASSING = SAMPLES.find("python", "# read by a passing test")
AT_IMPORT = SAMPLES.find("python", "# read at import")
AT_IMPORT.code  # the old way: registered when the module is imported
FAILING = SAMPLES.find("python", "# read by a failing test")
SKIPPED = SAMPLES.find("python", "# read by a skipped test")
NEVER_READ = SAMPLES.find("python", "# looked up, never read")


def test_passes():
    exec(PASSING.code, {})


def test_fails():
    FAILING.code
    assert False, "the sample does not do what the README says"


def test_is_skipped():
    SKIPPED.code
    pytest.skip("not here")



def test_every_sample_is_exercised(request):
    SAMPLES.check(request)
""",
    # Every sample read by a passing test.
    "test_toy_complete.py": TOY_HEADER
    + """
ALL = [SAMPLES.find("python", f"# {words}") for words in (
    "read by a passing test", "read at import", "read by a failing test",
    "read by a skipped test", "looked up, never read", "looked up by nobody",
)]


def test_reads_them_all():
    for sample in ALL:
        exec(sample.code, {})


def test_every_sample_is_exercised(request):
    SAMPLES.check(request)
""",
}


def run_toy_session(directory, *args: str) -> dict[tuple[str, str], tuple[str, str]]:
    """Run pytest on the toy modules in ``directory``; return {(module, test): (outcome, message)}."""
    report = directory / "report.xml"
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_TOP), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:django", "-q",
         f"--junitxml={report}", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert report.exists(), result.stdout + result.stderr
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname").rsplit(".", 1)[-1]
        verdict = next(iter(case), None)
        outcome = "passed" if verdict is None else verdict.tag
        outcomes[module, case.get("name")] = (
            outcome,
            "" if verdict is None else verdict.get("message", ""),
        )
    return outcomes


def test_the_checker_counts_only_reads_by_tests_that_passed(tmp_path):
    """In a real pytest run: reads at import, in failing or skipped tests, or by no test fail the checker."""
    (tmp_path / "TOY.rst").write_text(TOY_README)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for name, code in TOY_MODULES.items():
        (tmp_path / name).write_text(code)
    lines = {block.code.strip("# \n"): block.line for block in read_blocks(TOY_README)}

    outcomes = run_toy_session(tmp_path, *TOY_MODULES)
    assert {key: outcome for key, (outcome, _) in outcomes.items()} == {
        ("test_toy_gaps", "test_passes"): "passed",
        ("test_toy_gaps", "test_fails"): "failure",
        ("test_toy_gaps", "test_is_skipped"): "skipped",
        ("test_toy_gaps", "test_every_sample_is_exercised"): "failure",
        ("test_toy_complete", "test_reads_them_all"): "passed",
        ("test_toy_complete", "test_every_sample_is_exercised"): "passed",
    }
    message = outcomes["test_toy_gaps", "test_every_sample_is_exercised"][1]
    flagged = sorted(int(n) for n in re.findall(r"line (\d+) \(python\)", message))
    assert flagged == sorted(n for words, n in lines.items() if words != "read by a passing test")
    for words, reason in (
        ("read at import", "read only outside any test"),
        ("read by a failing test", "read only by tests that did not pass: ['test_fails']"),
        ("read by a skipped test", "read only by tests that did not pass: ['test_is_skipped']"),
        ("looked up, never read", "looked up, but no test read it"),
        ("looked up by nobody", "no test looks it up"),
    ):
        assert f"line {lines[words]} (python): {reason}" in message

    # With a test deselected, the checker cannot judge: it skips rather than pass or fail.
    partial = run_toy_session(tmp_path, "test_toy_complete.py", "-k", "not reads_them_all")
    assert [outcome for outcome, _ in partial.values()] == ["skipped"]
