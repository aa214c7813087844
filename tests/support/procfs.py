"""What /proc says about a process: resource use, children, exit, TCP connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

ESTABLISHED = "01"  # the st column of /proc/net/tcp


def stat_fields(pid: int) -> list[str]:
    """Return /proc/PID/stat split after the command name (which may hold spaces).

    Index 0 is field 3 of proc(5) (state), so field N is at index N - 3.
    Raise FileNotFoundError when there is no such process.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


@dataclass(frozen=True)
class ProcessStats:
    """Resource use of one process, read from /proc."""

    rss: int  # resident memory, bytes
    fds: int  # open file descriptors
    cpu_seconds: float  # user + system time
    threads: int


def process_stats(pid: int) -> ProcessStats:
    """Return the resident memory, open fds, CPU time and thread count of ``pid``."""
    fields = stat_fields(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcessStats(
        rss=int(fields[24 - 3]) * os.sysconf("SC_PAGE_SIZE"),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cpu_seconds=(int(fields[14 - 3]) + int(fields[15 - 3])) / ticks,
        threads=int(fields[20 - 3]),
    )


def children(pid: int) -> list[int]:
    """Return the PIDs whose parent is ``pid`` (a gunicorn master's workers), sorted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(stat_fields(int(entry.name))[1])
        except OSError:  # it exited meanwhile
            continue
        if parent == pid:
            found.append(int(entry.name))
    return sorted(found)


def exited(pid: int) -> bool:
    """Return whether ``pid`` has exited: gone, or a zombie its parent has not reaped."""
    try:
        return stat_fields(pid)[0] == "Z"
    except FileNotFoundError:
        return True


def socket_inodes(pid: int) -> set[str]:
    """Return the inodes of the sockets ``pid`` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


class Connection(NamedTuple):
    """One TCP socket of a process, from /proc/net/tcp(6)."""

    local_port: int
    remote_port: int
    established: bool


def _tcp_sockets() -> Iterator[tuple[str, Connection]]:
    """Yield every TCP socket of the machine as (inode, connection), from /proc/net/tcp(6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            yield fields[9], Connection(local, remote, fields[3] == ESTABLISHED)


def tcp_connections(pid: int, remote_port: int) -> list[Connection]:
    """Return ``pid``'s TCP sockets whose remote end is port ``remote_port`` (any state)."""
    inodes = socket_inodes(pid)
    return [
        connection
        for inode, connection in _tcp_sockets()
        if inode in inodes and connection.remote_port == remote_port
    ]


def redis_connections_of(pid: int, redis_port: int) -> int:
    """Return how many established TCP connections ``pid`` holds to ``redis_port``."""
    return sum(1 for connection in tcp_connections(pid, redis_port) if connection.established)


def established_to_port(port: int) -> int:
    """Return how many established TCP connections have ``port`` as their local end (a server's)."""
    return sum(
        1
        for _, connection in _tcp_sockets()
        if connection.local_port == port and connection.established
    )
