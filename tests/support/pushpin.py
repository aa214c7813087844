"""A Pushpin (GRIP proxy) of its own per test: Debian's ``pushpin``, on free loopback ports.

Every port and socket is its own (``rundir`` in a temporary directory, the
ZeroMQ ports free ports), so tests and parallel runs never share one.
"""

from __future__ import annotations

import http.client
import re
import shutil
import tempfile
from pathlib import Path

from .servers import Server, _accepts, free_port

#: Where Debian's pushpin keeps internal.conf and the runner's templates.
SYSTEM_LIBDIR = Path("/usr/lib/pushpin")


class PushpinServer(Server):
    """``pushpin --config <own> --port 127.0.0.1:<port>`` with the routes file ``routes``.

    ``port``: where clients connect; ``control_url``: the HTTP control API
    (``SSE_GRIP_URL``; give ``control_port`` to know it before the backend
    starts). ``start()`` waits until both accept and, given ``ready_path``
    (a stream of the backend), until the proxy holds a stream.
    ``message_rate`` and ``message_hwm``: the handler's deliveries per second,
    and how many may wait (Pushpin drops, and logs, those past it);
    ``request_hwm``: how many requests to the backend zurl queues and keeps
    open (past it, the proxy answers 502 to a burst of new streams).
    """

    name = "pushpin"

    def __init__(
        self,
        routes: str,
        control_port: int | None = None,
        ready_path: str | None = None,
        message_rate: int = 100_000,
        message_hwm: int = 100_000,
        request_hwm: int = 1000,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.ready_path = ready_path
        self.message_rate = message_rate
        self.message_hwm = message_hwm
        self.request_hwm = request_hwm
        self.control_port = control_port or free_port()
        self.zmq_ports = [free_port() for _ in range(3)]
        self.directory = Path(tempfile.mkdtemp(prefix="django-sse-pushpin-"))
        (self.directory / "run").mkdir()
        (self.directory / "log").mkdir()
        (self.directory / "routes").write_text(routes + "\n")
        # The runner writes zurl's config from a template under its libdir: this one's own,
        # with ``request_hwm`` as zurl's bounds of queued and open requests (Debian's
        # template: 1,000 and 2,000).
        template = (SYSTEM_LIBDIR / "runner" / "zurl.conf.template").read_text()
        template = re.sub(
            r"(?m)^(in_hwm|out_hwm|max_open_requests)=\d+$", rf"\1={request_hwm}", template
        )
        runner = self.directory / "lib" / "runner"
        runner.mkdir(parents=True)
        (runner / "zurl.conf.template").write_text(template)
        (self.directory / "pushpin.conf").write_text(self._config())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def command(self) -> list[str]:
        pushpin = shutil.which("pushpin")
        if pushpin is None:
            raise RuntimeError("pushpin is not installed: run ./scripts/install-system-deps")
        return [
            pushpin,
            "--config", str(self.directory / "pushpin.conf"),
            "--port", f"127.0.0.1:{self.port}",
            "--merge-output",
        ]  # fmt: skip

    def ready(self) -> bool:
        """Both ports accept and, with ``ready_path``, a GRIP hold through the proxy is accepted.

        The proxy hands a hold to its handler over a socket of its own, which
        may connect after the ports listen ("Accept service unavailable").
        """
        if not (_accepts(self.port) and _accepts(self.control_port)):
            return False
        if self.ready_path is None:
            return True
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", self.ready_path)
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _config(self) -> str:
        push_in, push_in_sub, command = self.zmq_ports
        return f"""\
[global]
include={SYSTEM_LIBDIR}/internal.conf
libdir={self.directory / "lib"}
rundir={self.directory / "run"}
ipc_prefix=sse-test-
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
logdir={self.directory / "log"}
log_level=2
client_buffer_size=8192
client_maxconn=50000

[proxy]
# Debian's internal.conf sends the proxy's requests to a system zurl (/var/run/zurl):
# this one's own zurl instead (the runner starts it, in rundir).
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
routesfile=routes
debug=true
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
sig_iss=pushpin
sig_key=changeme
updates_check=off

[handler]
push_in_spec=tcp://127.0.0.1:{push_in}
push_in_sub_specs=tcp://127.0.0.1:{push_in_sub}
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port={self.control_port}
stats_spec=ipc://{{rundir}}/{{ipc_prefix}}stats
command_spec=tcp://127.0.0.1:{command}
message_rate={self.message_rate}
message_hwm={self.message_hwm}
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
"""
