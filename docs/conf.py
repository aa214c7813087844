"""Sphinx configuration of django-sse's documentation (``./scripts/docs``; CI builds it with -W)."""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))  # the checkout's django_sse, whose docstrings the API reference shows

# Importing django_sse's modules needs configured settings; the docs need no database.
settings.configure(
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django_sse"],
    USE_TZ=True,
)
django.setup()

import django_sse  # noqa: E402  (after django.setup())

project = "django-sse"
author = "the django-sse developers"
copyright = "2026, the django-sse developers"
release = django_sse.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"django-sse {release}"
html_static_path: list[str] = []
