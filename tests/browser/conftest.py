import pytest

from tests.browser.fixtures import EXAMPLE_KINDS, browser, example  # noqa: F401  (fixtures of this folder)


@pytest.fixture(params=EXAMPLE_KINDS)
def example_kind(request) -> str:
    """Every browser test that uses ``example`` runs on each server of ``EXAMPLE_KINDS``."""
    return request.param
