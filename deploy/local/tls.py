"""A certificate authority of the local stack and the servers' certificate it signs (openssl CLI).

    python -m deploy.local.tls [FOLDER]     # create (or keep) them; default <state>/tls

`ensure(folder)` creates, once per folder, `ca.crt`/`ca.key` (a self-signed CA) and `server.crt`/
`server.key` (for 127.0.0.1 and localhost, signed by that CA); keys are written 0600 in a 0700
folder and never leave it. Kafka reads the PEM files directly (`ssl.keystore.type=PEM`),
PostgreSQL gets its own copy of the pair in its data folder (it insists on owning its key). A
certificate that expires within a day is replaced, together with its key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DAYS = 825  # what browsers and most TLS stacks accept as the longest life of a server certificate
HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate followed by the CA's: the chain a server presents."""
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        """PKCS#8 PEM, unencrypted (Kafka's PEM key store and PostgreSQL both read it)."""
        return self.folder / "server.key"


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def _valid(cert: Path) -> bool:
    if not cert.exists():
        return False
    check = subprocess.run(
        ["openssl", "x509", "-checkend", "86400", "-noout", "-in", str(cert)], capture_output=True, check=False
    )
    return check.returncode == 0


def make_ca(folder: Path, name: str = "clustergrants local CA") -> TlsFiles:
    """A new self-signed CA in `folder` (replacing one there)."""
    files = TlsFiles(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    old = os.umask(0o077)  # the key is created 0600
    try:
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files.ca_key), "-out", str(files.ca_cert),
            "-days", str(DAYS), "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    finally:
        os.umask(old)
    os.chmod(files.ca_cert, 0o644)
    return files


def make_server(files: TlsFiles, hosts: tuple[str, ...] = HOSTS) -> None:
    """A server key and a certificate for `hosts` signed by the CA of `files`."""
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    leaf = files.folder / "server.leaf.crt"
    old = os.umask(0o077)
    try:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(files.server_key))
        _openssl(
            "req", "-x509", "-new", "-key", str(files.server_key), "-CA", str(files.ca_cert), "-CAkey", str(files.ca_key),
            "-days", str(DAYS), "-subj", f"/CN={hosts[-1]}", "-addext", f"subjectAltName={names}",
            "-addext", "extendedKeyUsage=serverAuth", "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment", "-out", str(leaf),
        )  # fmt: skip
    finally:
        os.umask(old)
    files.server_cert.write_text(leaf.read_text() + files.ca_cert.read_text())
    leaf.unlink()
    os.chmod(files.server_cert, 0o644)


def ensure(folder: Path, hosts: tuple[str, ...] = HOSTS) -> TlsFiles:
    """The CA and server certificate of `folder`, created (or renewed) when missing or expiring."""
    files = TlsFiles(folder)
    if not (_valid(files.ca_cert) and files.ca_key.exists()):
        make_ca(folder)
        files.server_cert.unlink(missing_ok=True)
    if not (_valid(files.server_cert) and files.server_key.exists()):
        make_server(files, hosts)
    return files


if __name__ == "__main__":
    here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(os.environ.get("CLUSTERGRANTS_STATE_DIR", ".local")) / "tls"
    made = ensure(here)
    print(f"CA {made.ca_cert}; server certificate {made.server_cert} (key {made.server_key}, mode 0600)")
