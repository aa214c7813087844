"""Test certificates: a CA and a server certificate for 127.0.0.1 and localhost (openssl's CLI)."""

from __future__ import annotations

import subprocess


def make_certificates(directory) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    paths = {
        name: str(directory / name) for name in ("ca.key", "ca.crt", "server.key", "server.crt")
    }
    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs its key usage, a
    # server certificate its key identifiers, as real ones have.
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        paths["ca.key"],
        "-out",
        paths["ca.crt"],
        "-subj",
        "/CN=django-sse test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        paths["server.key"],
        "-out",
        str(directory / "server.csr"),
        "-subj",
        "/CN=localhost",
    )
    openssl("x509", "-req", "-in", str(directory / "server.csr"), "-CA", paths["ca.crt"],
            "-CAkey", paths["ca.key"], "-CAcreateserial", "-days", "2",
            "-out", paths["server.crt"], "-extfile", str(ext))  # fmt: skip
    return paths
