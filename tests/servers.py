"""The real servers of the tests; they live in ``tests.support`` (shared with the benchmarks)."""

from tests.support.procfs import ProcessStats, process_stats
from tests.support.servers import (
    REPO_TOP,
    START_TIMEOUT,
    GunicornServer,
    HttpServer,
    PywsgiServer,
    RedisServer,
    RunserverServer,
    Server,
    ServerError,
    free_port,
    project_env,
)

__all__ = [
    "REPO_TOP",
    "START_TIMEOUT",
    "GunicornServer",
    "HttpServer",
    "ProcessStats",
    "PywsgiServer",
    "RedisServer",
    "RunserverServer",
    "Server",
    "ServerError",
    "free_port",
    "process_stats",
    "project_env",
]
