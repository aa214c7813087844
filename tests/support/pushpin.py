"""A Pushpin (GRIP proxy) of its own per test: Debian's ``pushpin``, on free loopback ports.

Every port and socket is its own (``rundir`` in a temporary directory, the
ZeroMQ ports free ports), so tests and parallel runs never share one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .servers import Server, _accepts, free_port


class PushpinServer(Server):
    """``pushpin --config <own> --port 127.0.0.1:<port>`` with the routes file ``routes``.

    ``port``: where clients connect; ``control_url``: the HTTP control API
    (``SSE_GRIP_URL``; give ``control_port`` to know it before the backend
    starts). ``start()`` waits until both accept.
    """

    name = "pushpin"

    def __init__(self, routes: str, control_port: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.control_port = control_port or free_port()
        self.zmq_ports = [free_port() for _ in range(3)]
        self.directory = Path(tempfile.mkdtemp(prefix="django-sse-pushpin-"))
        (self.directory / "run").mkdir()
        (self.directory / "log").mkdir()
        (self.directory / "routes").write_text(routes + "\n")
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
        return _accepts(self.port) and _accepts(self.control_port)

    def _config(self) -> str:
        push_in, push_in_sub, command = self.zmq_ports
        return f"""\
[global]
include={{libdir}}/internal.conf
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
message_rate=100000
message_hwm=100000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
"""
