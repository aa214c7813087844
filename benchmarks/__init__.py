"""Benchmarks of django-sse against a raw gevent ceiling: ``python -m benchmarks.run``."""
