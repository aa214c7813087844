"""docs/guides/browser-client.rst: the client module in Chromium, and the static files settings.

Samples are looked up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import re

import pytest

from tests.support.doc_pages import module_script, pages_tested_by
from tests.support.readme_samples import Samples, track
from tests.support.servers import REPO_TOP

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

CLIENT_SCRIPT = SAMPLES.find("html+django", "const stream = connect(")
STATIC_SETTINGS = SAMPLES.find("python", "# right after SecurityMiddleware")
STATIC_NGINX = SAMPLES.find("nginx", "alias ")


@pytest.mark.browser
@pytest.mark.integration
def test_browser_client_sample_resets_parses_json_and_reports_state(example, recording_page):
    """In Chromium, the client sample (as a module): onReset for a lost position, parsed JSON, state."""
    driver, wait = recording_page
    driver.execute_script(
        "const script = document.createElement('script');"
        "script.type = 'module';"
        "script.textContent = arguments[0];"
        "document.head.append(script);",
        module_script(CLIENT_SCRIPT.code).replace(
            '"/orders/events/"', '"/feed/events/?lastEventId=1-0"'
        ),
    )
    wait.until(lambda d: ["reload", ["feed"]] in d.execute_script("return calls"))
    wait.until(lambda _: example.subscribers("feed") >= 1)
    example.manage("send_event", "feed", "order-shipped", '{"id": 42}', "--json")
    wait.until(lambda d: ["shipped", {"id": 42}] in d.execute_script("return calls"))
    calls = driver.execute_script("return calls")
    assert ["state", "open", "leader"] in calls
    assert calls.index(["reload", ["feed"]]) < calls.index(["shipped", {"id": 42}])


def test_static_files_samples_put_whitenoise_after_security_and_nginx_on_static_root():
    """WhiteNoise right after SecurityMiddleware, serving STATIC_ROOT; nginx aliases STATIC_URL to it; the example agrees."""
    from django.utils.module_loading import import_string

    namespace: dict = {"BASE_DIR": REPO_TOP / "mysite"}
    exec(compile(STATIC_SETTINGS.code, "<browser-client.rst settings.py>", "exec"), namespace)
    middleware = namespace["MIDDLEWARE"]
    assert middleware[:2] == [
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
    ]
    import_string(middleware[1])  # installed with the test extra, as the page says to
    static_root = namespace["STATIC_ROOT"]
    assert static_root == REPO_TOP / "mysite" / "staticfiles"

    [location] = re.findall(r"location (\S+) \{", STATIC_NGINX.code)
    [alias] = re.findall(r"alias (\S+);", STATIC_NGINX.code)
    # nginx's alias replaces the location's prefix: both end with a slash.
    assert location == "/static/" and alias.endswith("/staticfiles/")

    project = REPO_TOP / "example" / "example"
    example_settings = (project / "settings.py").read_text(encoding="utf-8")
    assert '"whitenoise.middleware.WhiteNoiseMiddleware"' in example_settings
    assert "STATIC_ROOT" in example_settings
    assert "serve" not in (project / "urls.py").read_text(encoding="utf-8")


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
