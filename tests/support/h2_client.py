"""A bare HTTP/2 client on the h2 library, for what httpx does not send: a stream's reset.

httpx forgets a stream whose response is closed early; a browser closing a
tab sends RST_STREAM on a connection that goes on. ``H2Connection`` opens
streams on one TLS connection, reads their bodies, and resets one.
"""

from __future__ import annotations

import socket
import ssl

import h2.config
import h2.connection
import h2.errors
import h2.events


class H2Connection:
    """One HTTP/2 connection over TLS to ``127.0.0.1:port``, trusting the CA at ``ca``."""

    def __init__(self, port: int, ca: str, timeout: float = 10) -> None:
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.bodies: dict[int, bytes] = {}
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def get(self, path: str) -> int:
        """Send a GET for ``path`` on a new stream; return the stream's id."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "GET"),
            (":path", path),
            (":scheme", "https"),
            (":authority", "localhost"),
        ]
        self.h2.send_headers(stream_id, headers, end_stream=True)
        self.bodies[stream_id] = b""
        self._flush()
        return stream_id

    def read_until(self, stream_id: int, marker: bytes) -> bytes:
        """Read the connection until the body of ``stream_id`` holds ``marker``; return that body."""
        while marker not in self.bodies[stream_id]:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("The server closed the connection.")
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.bodies[event.stream_id] = (
                        self.bodies.get(event.stream_id, b"") + event.data
                    )
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self._flush()
        return self.bodies[stream_id]

    def reset(self, stream_id: int) -> None:
        """Reset ``stream_id`` (CANCEL), as a browser does when a tab closes; the connection stays."""
        self.h2.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        self._flush()

    def close(self) -> None:
        self.h2.close_connection()
        try:
            self._flush()
        finally:
            self.sock.close()
