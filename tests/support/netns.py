"""Network namespaces as the "hosts" of a test: ``ip netns``, a switch, and entering one.

``Network`` owns everything it creates: namespaces named
``django-sse-<pid>-<name>`` (unique per test process; those of a killed
process are deleted by the next run) and, inside them, a bridge and veth
pairs, created directly in the namespaces so that nothing ever appears among
the machine's own interfaces or routes. ``close()`` deletes the namespaces
(their interfaces go with them); stop the processes started in them first::

    with Network() as network:
        lan = network.switch()
        redis, web = network.namespace("redis"), network.namespace("web")
        redis_port, web_port = lan.plug(redis), lan.plug(web)  # 10.231.0.1, 10.231.0.2
        server = NamespacedRedis(namespace=redis, ...)  # see InNamespace
        with web.entered():
            sock = socket.create_connection((redis_port.address, server.port))
        web_port.block()  # the switch drops web's frames; attach() ends that

``Namespace.entered()`` moves the calling thread (a network namespace is a
thread's) into the namespace and back: sockets created inside stay in it,
so a test's clients are ordinary sockets, made there and read from anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

#: The hosts' LAN: 10.231.0.0/24, private and only ever inside the test's namespaces.
ADDRESS_PREFIX = "10.231"
_NAME_PREFIX = "django-sse-"
_CLONE_NEWNET = 0x40000000


def ip(*args: str) -> str:
    """Run ``ip ARGS``; return its output, raise with its stderr when it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def namespaces() -> list[str]:
    """Return the names of every network namespace ``ip netns`` knows."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, os.CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class Namespace:
    """One network namespace with its loopback up; ``name`` is what ``ip netns`` calls it."""

    def __init__(self, name: str) -> None:
        self.name = name
        ip("netns", "add", name)
        try:
            ip("-n", name, "link", "set", "lo", "up")
        except RuntimeError:
            self.delete()
            raise

    def prefix(self) -> list[str]:
        """Return the command prefix that runs a program inside: ``ip netns exec NAME``."""
        return ["ip", "netns", "exec", self.name]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread inside this namespace.

        Pitfall: only sockets created in the block are in the namespace; a
        redis-py client that reconnects later does so from the thread's own.
        """
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def delete(self) -> None:
        ip("netns", "delete", self.name)

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"


class Port:
    """A host's cable into a ``Switch``: a veth pair, ``eth0`` in the host, 10.231.0.<number>.

    Two ways to cut it, neither of which tells the other side (no RST, no
    ICMP): ``unplug()`` sets the host's end down, as a pulled cable (the
    host's kernel drops its route, so its own sends fail at once);
    ``block()`` takes the switch's end off the bridge, as a switch that
    silently drops the port's frames (both ends stay up and keep sending).
    """

    def __init__(self, switch: Switch, ns: Namespace, number: int) -> None:
        self.switch = switch
        self.ns = ns
        self.address = f"{ADDRESS_PREFIX}.0.{number}"
        self.switch_end = f"port{number}"
        ip("-n", switch.ns.name, "link", "add", self.switch_end, "type", "veth",
           "peer", "name", "eth0", "netns", ns.name)  # fmt: skip
        ip("-n", ns.name, "addr", "add", self.address + "/24", "dev", "eth0")
        ip("-n", ns.name, "link", "set", "eth0", "up")
        self.attach()
        ip("-n", switch.ns.name, "link", "set", self.switch_end, "up")

    def unplug(self) -> None:
        ip("-n", self.ns.name, "link", "set", "eth0", "down")

    def plug(self) -> None:
        """Undo ``unplug()`` (the address was kept; the host's route comes back)."""
        ip("-n", self.ns.name, "link", "set", "eth0", "up")

    def block(self) -> None:
        ip("-n", self.switch.ns.name, "link", "set", self.switch_end, "nomaster")

    def attach(self) -> None:
        """Put the switch's end on the bridge (again, after ``block()``); it forwards at once (no STP)."""
        ip("-n", self.switch.ns.name, "link", "set", self.switch_end, "master", Switch.BRIDGE)


class Switch:
    """A namespace holding one bridge that every ``Port`` plugs into: the hosts' LAN."""

    BRIDGE = "br0"

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        ip("-n", ns.name, "link", "add", self.BRIDGE, "type", "bridge")
        ip("-n", ns.name, "link", "set", self.BRIDGE, "up")
        self.ports: list[Port] = []

    def plug(self, ns: Namespace) -> Port:
        """Connect ``ns`` to this switch; return its port (addresses .1, .2, ... in order)."""
        port = Port(self, ns, len(self.ports) + 1)
        self.ports.append(port)
        return port


class Network:
    """The namespaces of one test run (with the switch and cables inside them); ``close()`` deletes them all."""

    def __init__(self) -> None:
        self.prefix = f"{_NAME_PREFIX}{os.getpid()}-"
        self.created: list[Namespace] = []
        _delete_orphans()

    def namespace(self, name: str) -> Namespace:
        ns = Namespace(self.prefix + name)
        self.created.append(ns)
        return ns

    def switch(self, name: str = "switch") -> Switch:
        """Return a new switch in a namespace of its own."""
        return Switch(self.namespace(name))

    def left(self) -> list[str]:
        """Return the namespaces of this run that still exist."""
        return [name for name in namespaces() if name.startswith(self.prefix)]

    def close(self) -> None:
        errors = []
        for ns in reversed(self.created):
            try:
                ns.delete()
            except RuntimeError as exc:
                errors.append(str(exc))
        self.created.clear()
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _delete_orphans() -> None:
    """Delete namespaces that a test process which no longer exists left (it was killed)."""
    for name in namespaces():
        if not name.startswith(_NAME_PREFIX):
            continue
        pid = name[len(_NAME_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(RuntimeError):
                ip("netns", "delete", name)


class InNamespace:
    """Mixin for a ``tests.support.servers.Server``: run it, and probe it, inside ``namespace``.

    Its port is chosen free on the test's own loopback; a namespace has a
    loopback of its own, where nothing else listens.
    """

    def __init__(self, *args, namespace: Namespace, **kwargs) -> None:
        self.namespace = namespace
        super().__init__(*args, **kwargs)

    def command(self) -> list[str]:
        return [*self.namespace.prefix(), *super().command()]  # type: ignore[misc]

    def ready(self) -> bool:
        with self.namespace.entered():
            return super().ready()  # type: ignore[misc]
