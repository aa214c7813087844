"""Run the benchmarks: django-sse beside a raw gevent ceiling, in the same run.

    python -m benchmarks.run                                # every scenario, once
    python -m benchmarks.run --repeat 3                     # medians of 3
    python -m benchmarks.run --scenario fanout --n 500      # one scenario, another size
    python -m benchmarks.run --scenario idle --n 10000 --server library
    python -m benchmarks.run --redis single --redis cluster --scenario fanout

Starts a redis-server (no persistence; ``--redis cluster``: a 3-master Redis
Cluster, and the servers get ``SSE_REDIS_CLUSTER = True``; both: each with
its own publisher, scenario by scenario in turn) and a publisher process, then for each
scenario and repeat a fresh server of each kind: the library under gunicorn
(``-c gunicorn.conf.py``, one worker: ``library`` with gunicorn's gevent
worker, ``library-worker`` with ``django_sse.worker.GeventWorker``) and the
ceiling (``benchmarks/ceiling.py``). Prints one JSON line per scenario
(medians over repeats, and each library figure as a ratio to the ceiling's:
``ratio`` and ``worker_ratio``; on the cluster, where the ceiling is left out
since it does not speak cluster, ``cluster_ratio``: each library figure over the
same server's single-node figure of the run), then a table and the goals of
issue 6 with the library's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import scenarios
from .loadclient import raise_fd_limit
from .servers import SERVERS

# name -> (function, parameter sets, headline figures for the table)
SCENARIOS: dict[str, tuple[Callable[..., dict], list[dict], list[str]]] = {
    "send-event": (
        scenarios.send_event_cost,
        [{}],
        ["history_on_per_s", "history_off_per_s", "history_on_us", "history_off_us"],
    ),
    "idle": (
        scenarios.idle,
        [{"n": 1000}, {"n": 5000}, {"n": 10000}, {"n": 15000}],
        [
            "held", "ready_s", "first_event_s", "rss_per_stream_kb", "greenlet_stack_kb",
            "open_cpu_us", "gc_s", "fds", "redis_connections", "redis_nodes", "redis_reads",
        ],
    ),
    "fanout": (
        scenarios.fanout,
        [{"n": 1000}, {"n": 1000, "channels": 3}],
        [
            "lost", "duplicates", "reconnects", "deliveries_per_s", "burst_p50_ms",
            "burst_p99_ms", "burst_max_ms", "steady_p50_ms", "steady_p99_ms",
            "cpu_us_per_delivery", "steady_cpu_us_per_delivery", "steady_client_cores",
            "burst_client_cores", "redis_connections", "redis_nodes",
        ],
    ),
    "many-channels": (
        scenarios.many_channels,
        [{"n": 1000}],
        [
            "lost", "duplicates", "p50_ms", "p95_ms", "p99_ms", "max_ms", "round_s",
            "cpu_us_per_delivery", "redis_connections",
        ],
    ),
    "churn": (
        scenarios.churn,
        [{"cycles": 5000}],
        [
            "cycles", "failed", "cycles_per_s", "rss_growth_kb", "fds_before", "fds_peak",
            "fds_after", "greenlets_before", "greenlets_after", "objects_before",
            "objects_after", "redis_before", "redis_after", "streams_after",
        ],
    ),
    "replay": (
        scenarios.replay,
        [{"n": 1000}],
        [
            "caught_up_s", "all_s", "lost", "duplicates", "reconnects", "worker_cpu_s",
            "redis_connections",
        ],
    ),
    "storm": (
        scenarios.storm,
        [
            {"n": 1000, "mode": "kill"}, {"n": 1000, "mode": "hup"}, {"n": 5000, "mode": "kill"},
            {"n": 10000, "mode": "kill"},
        ],
        [
            "caught_up_s", "lag_after_last_event_s", "reconnect_span_s", "peak_reconnects_per_s",
            "history_reads", "shared_reads", "redis_commands", "new_worker_cpu_s", "lost",
            "duplicates",
        ],
    ),
}  # fmt: skip
SIZE_PARAMETER = {
    "idle": "n",
    "fanout": "n",
    "many-channels": "n",
    "churn": "cycles",
    "replay": "n",
    "storm": "n",
}


def parameter_sets(name: str, size: int | None) -> list[dict]:
    """The scenario's parameter sets; with ``size``, each at that size (variants kept once)."""
    sets = SCENARIOS[name][1]
    if size is None or name not in SIZE_PARAMETER:
        return sets
    sized = [{**params, SIZE_PARAMETER[name]: size} for params in sets]
    return [params for i, params in enumerate(sized) if params not in sized[:i]]


def run_scenario(
    bench: scenarios.Bench, name: str, params: dict, repeat: int, kinds: list[str]
) -> dict:
    function = SCENARIOS[name][0]
    line: dict[str, Any] = {"scenario": name, "params": params, "redis": bench.topology}
    for kind in kinds:
        reason = bench.unsupported(kind, name)
        if reason:
            line[kind] = {"skipped": reason}
            print(f"# {name} {_label(params)} {kind}: left out, {reason}", file=sys.stderr)
    kinds = [kind for kind in kinds if kind not in line]
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for index in range(repeat):
        for kind in kinds:
            started = time.monotonic()
            result = function(bench, kind, **params)
            result["run_s"] = round(time.monotonic() - started, 1)
            runs[kind].append(result)
            print(
                f"# {name} {_label(params)} {bench.topology} {kind} #{index + 1}: "
                f"{json.dumps(result)}",
                file=sys.stderr,
                flush=True,
            )
    line["repeat"] = repeat
    for kind in kinds:
        keys = runs[kind][0].keys()
        line[kind] = {key: scenarios.median([run[key] for run in runs[kind]]) for key in keys}
    for kind, ratio_key in RATIOS.items():
        if kind in kinds and "ceiling" in kinds:
            line[ratio_key] = {
                key: _ratio(value, line["ceiling"].get(key)) for key, value in line[kind].items()
            }
    if "library-asgi" in kinds and "sse-starlette" in kinds:
        line["asgi_vs_starlette"] = {
            key: _ratio(value, line["sse-starlette"].get(key))
            for key, value in line["library-asgi"].items()
        }
    if "library-asgi" in kinds and "django-floor" in kinds:
        line["asgi_vs_django_floor"] = {
            key: _ratio(value, line["django-floor"].get(key))
            for key, value in line["library-asgi"].items()
        }
    return line


#: Servers run only when named with --server: metrics on; the ASGI ones (sse-starlette
#: needs benchmarks/requirements.txt).
OPT_IN = ("library-metrics", "library-asgi", "sse-starlette", "django-floor")

#: Each library server's figures as ratios to the ceiling's, under these keys.
RATIOS = {
    "library": "ratio",
    "library-worker": "worker_ratio",
    "library-metrics": "metrics_ratio",
    "library-asgi": "asgi_ratio",
}


def add_cluster_ratio(line: dict, single: dict) -> None:
    """Give the cluster ``line`` each library figure over ``single``'s (same scenario, same run)."""
    ratios = {}
    for kind in RATIOS:
        mine, theirs = line.get(kind), single.get(kind)
        if mine and theirs and "skipped" not in mine and "skipped" not in theirs:
            ratios[kind] = {key: _ratio(value, theirs.get(key)) for key, value in mine.items()}
    if ratios:
        line["cluster_ratio"] = ratios


def _ratio(mine: Any, ceiling: Any) -> float | None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (mine, ceiling))
    if not numbers or not ceiling:
        return None
    return round(mine / ceiling, 2)


def _label(params: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):  # redis_nodes: subscriber + command connections per master
        return " ".join(f"{node['subscribers']}+{node['commands']}" for node in value)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


#: The table's column of each library server's ``cluster_ratio``.
CLUSTER_RATIOS = {
    "library": "cluster_ratio",
    "library-worker": "worker_cluster_ratio",
    "library-metrics": "metrics_cluster_ratio",
    "library-asgi": "asgi_cluster_ratio",
}


def table(lines: list[dict]) -> str:
    columns = ["library", "ceiling", "ratio"]
    if any("library-worker" in line for line in lines):
        columns = ["library", "library-worker", "ceiling", "ratio", "worker_ratio"]
    if any("library-metrics" in line for line in lines):
        columns = [*columns[:-2], "library-metrics", *columns[-2:], "metrics_ratio"]
    asgi_columns = (
        "library-asgi",
        "sse-starlette",
        "django-floor",
        "asgi_ratio",
        "asgi_vs_starlette",
        "asgi_vs_django_floor",
    )
    if any(kind in line for kind in asgi_columns[:3] for line in lines):
        columns += [kind for kind in asgi_columns if any(kind in line for line in lines)]
    clustered = {kind for line in lines for kind in line.get("cluster_ratio", {})}
    columns += [CLUSTER_RATIOS[kind] for kind in CLUSTER_RATIOS if kind in clustered]
    by_column = {column: kind for kind, column in CLUSTER_RATIOS.items()}

    def figures(line: dict, column: str) -> dict:
        if column in by_column:
            return line.get("cluster_ratio", {}).get(by_column[column], {})
        return line.get(column, {})

    rows = [("scenario", "figure", *columns)]
    for line in lines:
        headline = SCENARIOS[line["scenario"]][2]
        title = f"{line['scenario']} {_label(line['params'])}".strip()
        if line.get("redis", "single") != "single":
            title += f" ({line['redis']})"
        for key in headline:
            rows.append(
                (title, key, *(_cell(figures(line, column).get(key)) for column in columns))
            )
            title = ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for number, row in enumerate(rows):
        out.append(
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def goals(lines: list[dict]) -> str:
    """The goals of issue 6, each with the library's measured figure."""
    library = [(line["scenario"], line["params"], line.get("library")) for line in lines]
    library = [item for item in library if item[2] and "skipped" not in item[2]]
    out = []

    def goal(text: str, figure: Any, met: bool | None) -> None:
        verdict = "n/a" if met is None else ("met" if met else "NOT MET")
        out.append(f"{verdict:8} {text}: {figure}")

    idle = {params["n"]: result for name, params, result in library if name == "idle"}
    if idle:
        worst = max(result["rss_per_stream_kb"] for result in idle.values())
        goal("<= 16 KB RSS per idle stream (worst N)", f"{worst} KB", worst <= 16)
        if 10000 in idle:
            ready = idle[10000]["ready_s"]
            goal("10,000 streams ready in <= 3 s", f"{ready} s", ready is not None and ready <= 3)
        if 15000 in idle:
            held = idle[15000]["held"]
            goal("15,000 streams held", f"{held}", held == 15000)
    for name, _, result in library:
        if name == "fanout":
            cpu = result["cpu_us_per_delivery"]
            goal(
                "<= 6 us worker CPU per delivery (fanout burst)",
                f"{cpu} us",
                cpu is not None and cpu <= 6,
            )
    losses = {}
    for name, params, result in library:
        lost = result.get("lost", result.get("failed"))
        if name == "idle":
            lost = params["n"] - result["held"]
        if lost is not None:
            losses[f"{name} {_label(params)}".strip()] = lost
    if losses:
        goal("0 loss in every scenario", json.dumps(losses), all(v == 0 for v in losses.values()))
    connections = []
    per_master = False
    for _, _, result in library:
        nodes = result.get("redis_nodes")
        if isinstance(nodes, list) and len(nodes) > 1:  # a cluster: the goal holds per master
            per_master = True
            connections += [node["subscribers"] + node["commands"] for node in nodes]
            continue
        connections += [
            result[key]
            for key in ("redis_connections", "redis_after")
            if isinstance(result.get(key), int)
        ]
    if connections:
        text = "<= 2 Redis connections per worker" + (" and master" if per_master else "")
        goal(text, f"max {max(connections)}", max(connections) <= 2)
    for name, _, result in library:
        if name == "churn":
            same = (
                result["fds_after"] <= result["fds_before"]
                and result["greenlets_after"] <= result["greenlets_before"]
                and result["redis_after"] <= result["redis_before"]
                and result["streams_after"] == 0
            )
            figure = (
                f"fds {result['fds_before']}->{result['fds_after']}, greenlets "
                f"{result['greenlets_before']}->{result['greenlets_after']}, redis "
                f"{result['redis_before']}->{result['redis_after']}, RSS "
                f"+{result['rss_growth_kb']} KB"
            )
            goal("after churn, everything back to baseline", figure, same)
    return "\n".join(out)


def asgi_goals(lines: list[dict]) -> str:
    """The ASGI mode's goals (issue 12), against sse-starlette of the same run."""
    out = []

    def goal(text: str, figure: Any, met: bool | None) -> None:
        verdict = "n/a" if met is None else ("met" if met else "NOT MET")
        out.append(f"{verdict:8} {text}: {figure}")

    for line in lines:
        mine, theirs = line.get("library-asgi"), line.get("sse-starlette")
        if not mine or "skipped" in mine:
            continue
        name, params = line["scenario"], line["params"]
        label = f"{name} {_label(params)}".strip()
        lost = mine.get("lost", mine.get("failed"))
        if name == "idle":
            lost = params["n"] - mine["held"]
        if lost is not None:
            goal(f"ASGI: 0 loss ({label})", lost, lost == 0)
        if not theirs or "skipped" in theirs:
            continue
        for key, text, bound in (
            ("cpu_us_per_delivery", "CPU per delivery <= half of sse-starlette's", 0.5),
            ("ready_s", "ready in <= half of sse-starlette's time", 0.5),
            ("rss_per_stream_kb", "RSS per idle stream below sse-starlette's", 1.0),
        ):
            if key not in mine or (key == "ready_s" and params.get("n") != 10000):
                continue
            ratio = _ratio(mine[key], theirs.get(key))
            met = None if ratio is None else (ratio <= bound if bound < 1 else ratio < bound)
            goal(f"ASGI: {text} ({label})", f"{mine[key]} vs {theirs.get(key)}: {ratio}", met)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="django-sse benchmarks, beside a raw ceiling.")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--redis",
        action="append",
        choices=["single", "cluster"],
        help="one redis-server or a 3-master Redis Cluster (repeatable; default: single)",
    )
    parser.add_argument("--n", type=int, help="size instead of the default (streams, or cycles)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per server; medians reported")
    parser.add_argument(
        "--server",
        action="append",
        choices=list(SERVERS),
        help="run this server (repeatable; default: library, library-worker, ceiling)",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        help="load client processes (default: 1 per core for large runs)",
    )
    parser.add_argument("--output", help="also append the JSON lines to this file")
    parser.add_argument("--log-dir", help="server logs (default: a temporary directory)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample the library's worker with py-spy; collapsed stacks in DIR",
    )
    arguments = parser.parse_args(argv)

    raise_fd_limit()
    names = arguments.scenario or list(SCENARIOS)
    kinds = arguments.server or [kind for kind in SERVERS if kind not in OPT_IN]
    log_dir = arguments.log_dir or tempfile.mkdtemp(prefix="django-sse-bench-")
    print(f"# logs in {log_dir}", file=sys.stderr, flush=True)
    topologies = [t for t in ("single", "cluster") if t in (arguments.redis or ["single"])]
    lines = []
    with contextlib.ExitStack() as stack:
        benches = [
            stack.enter_context(
                scenarios.Bench.running(
                    log_dir, arguments.client_processes, arguments.profile, topology
                )
            )
            for topology in topologies
        ]
        for name in names:
            for params in parameter_sets(name, arguments.n):
                single = None
                for bench in benches:  # in turn, so that both see the machine alike
                    line = run_scenario(bench, name, params, arguments.repeat, kinds)
                    if bench.topology == "single":
                        single = line
                    elif single is not None:
                        add_cluster_ratio(line, single)
                    lines.append(line)
                    text = json.dumps(line)
                    print(text, flush=True)
                    if arguments.output:
                        with open(arguments.output, "a") as output:
                            output.write(text + "\n")
    print()
    print(table(lines))
    for topology in topologies:
        print()
        if len(topologies) > 1:
            print(f"# goals, {topology} Redis")
        print(goals([line for line in lines if line.get("redis", "single") == topology]))
        asgi = asgi_goals([line for line in lines if line.get("redis", "single") == topology])
        if asgi:
            print(asgi)
    if arguments.profile:
        from .profiling import summarize

        for path in sorted(Path(arguments.profile).glob("*.txt")):
            print(f"\n# py-spy {path.name}\n{summarize(path, 15)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
