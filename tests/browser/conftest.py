from tests.browser.fixtures import browser, example  # noqa: F401  (fixtures of this folder)
