"""The pages of the docs, the test module that runs each page's samples, and readers of samples.

Every page of docs/ and README.rst is tested by exactly one module, named in
``TESTED_BY``; a module of tests/docs/ reads its pages with
``Samples(*pages_tested_by(__name__))``, so that a sample added to any page is
judged by that module's ``test_every_sample_is_exercised``.
tests/docs/test_sample_checker.py checks that the mapping names every page.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.support.servers import REPO_TOP

README = REPO_TOP / "README.rst"
DOCS = REPO_TOP / "docs"
GUIDES = DOCS / "guides"
REFERENCE = DOCS / "reference"

# Which module runs the samples of each page (a page with no samples still has one:
# the module that would flag a sample added to it).
TESTED_BY: dict[Path, str] = {
    README: "tests.docs.test_quick_start",
    DOCS / "index.rst": "tests.docs.test_quick_start",
    DOCS / "quickstart.rst": "tests.docs.test_quick_start",
    DOCS / "comparison.rst": "tests.docs.test_quick_start",
    DOCS / "changelog.rst": "tests.docs.test_quick_start",
    DOCS / "tutorial.rst": "tests.docs.test_tutorial",
    DOCS / "security.rst": "tests.docs.test_security_page",
    GUIDES / "browser-client.rst": "tests.docs.test_browser_client_guide",
    GUIDES / "replay.rst": "tests.docs.test_replay_guide",
    GUIDES / "deployment.rst": "tests.docs.test_deployment_guide",
    GUIDES / "scaling.rst": "tests.docs.test_deployment_guide",
    GUIDES / "troubleshooting.rst": "tests.docs.test_deployment_guide",
    GUIDES / "testing.rst": "tests.docs.test_testing_guide",
    REFERENCE / "settings.rst": "tests.docs.test_reference",
    REFERENCE / "wire-format.rst": "tests.docs.test_reference",
    REFERENCE / "api.rst": "tests.docs.test_reference",
    REFERENCE / "commands.rst": "tests.docs.test_reference",
    DOCS / "migrating" / "django-sse-0.x.rst": "tests.docs.test_migrating_from_0x",
    # Guides whose samples a module beside the library's tests runs.
    DOCS / "migrating" / "django-eventstream.rst": "tests.test_docs_eventstream",
    GUIDES / "presence.rst": "tests.test_docs_presence",
    GUIDES / "operations.rst": "tests.test_metrics",
    GUIDES / "redis-security.rst": "tests.test_redis_security",
    GUIDES / "redis-cluster.rst": "tests.test_redis_cluster",
    GUIDES / "redis-sentinel.rst": "tests.test_redis_sentinel",
    GUIDES / "postgres.rst": "tests.test_postgres",
    GUIDES / "asgi.rst": "tests.test_asgi",
    GUIDES / "grip.rst": "tests.test_grip",
}


def doc_pages() -> list[Path]:
    """README.rst and every page of docs/ (not the built site)."""
    return [README, *sorted(page for page in DOCS.rglob("*.rst") if "_build" not in page.parts)]


def pages_tested_by(module: str) -> list[Path]:
    """The pages whose samples ``module`` (a dotted name) runs, README.rst first."""
    pages = [page for page in doc_pages() if TESTED_BY.get(page) == module]
    assert pages, f"TESTED_BY in {__name__} maps no page to {module}"
    return pages


def pages_of_tests_docs() -> list[Path]:
    """README.rst and the pages that the modules of tests/docs/ test."""
    return [page for page in doc_pages() if TESTED_BY.get(page, "").startswith("tests.docs.")]


def all_pages_text() -> str:
    """The text of ``pages_of_tests_docs()``, one after the other (for facts stated in prose)."""
    return "\n".join(page.read_text(encoding="utf-8") for page in pages_of_tests_docs())


def commands(console: str) -> list[tuple[list[str], list[str]]]:
    """Return each ``$ command`` of a console sample, split, with the output lines shown after it."""
    found: list[tuple[list[str], list[str]]] = []
    for line in console.splitlines():
        if line.startswith("$ "):
            found.append((shlex.split(line[2:]), []))
        elif line.strip():
            found[-1][1].append(line)
    return found


def render(template_code: str) -> str:
    """Render a template sample with Django's engine (``{% static %}`` gives this STATIC_URL's URL)."""
    from django.template import Context, Engine

    engine = Engine(libraries={"static": "django.templatetags.static"})
    return engine.from_string(template_code).render(Context())


def module_script(template_code: str) -> str:
    """The code of the ``<script type="module">`` of a template sample, rendered."""
    return re.search(r'<script type="module">(.*?)</script>', render(template_code), re.DOTALL)[1]
