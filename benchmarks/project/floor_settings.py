"""Settings of ``django-floor``: the benchmark project's, without the library, with the floor's URLs."""

from .settings import *  # noqa: F403

INSTALLED_APPS: list[str] = []  # Django alone: no hub, no broker, no check of the library
ROOT_URLCONF = "benchmarks.project.floor"
