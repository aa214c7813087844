"""The Django project under test: RedisQueueView streams and a stats view, served by gunicorn."""
