"""Independently started OpenAI-compatible servers that tests register as remote upstreams:
the real engine (``bodhi-llama-server`` with the demo model) and the fake one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .conftest import FAKE_SERVER
from .live_server import free_port

ENGINE = Path(sys.executable).with_name("bodhi-llama-server")


class Server:
    """A server subprocess on a free port; ``base_url`` as an OpenAI client takes it."""

    def __init__(self, cmd: list[str], port: int, log: Path, scheme: str = "http",
                 env: dict | None = None):
        self.port, self.log, self.scheme = port, log, scheme
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/v1"

    def wait_healthy(self, timeout: float) -> "Server":
        import ssl

        unverified = ssl._create_unverified_context()  # only to see that it listens
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"server exited:\n{self.log.read_text()}"
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                with urllib.request.urlopen(f"{self.scheme}://127.0.0.1:{self.port}/health",
                                            timeout=1, context=unverified) as r:
                    if r.status == 200:
                        return self
            assert time.monotonic() < deadline, f"not healthy:\n{self.log.read_text()[-2000:]}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def llama_server(model_path, log: Path, api_key: str, alias: str = "demo",
                 port: int | None = None) -> Server:
    """The project's own engine script serving the model; the key goes through the
    environment (LLAMA_API_KEY), not the command line. ``port``: to come back on one."""
    port = port or free_port()
    return Server([str(ENGINE), "-m", str(model_path), "-c", "1024", "-np", "2", "-t", "1",
                   "--port", str(port), "-a", alias], port, log,
                  env={**os.environ, "LLAMA_API_KEY": api_key})


def fake_server(log: Path, *args: str, alias: str = "fake", tls=None) -> Server:
    """``tls``: (certificate, key) PEM paths to serve https."""
    port = free_port()
    extra = ["--fake-tls", str(tls[0]), str(tls[1])] if tls else []
    return Server([sys.executable, str(FAKE_SERVER), "--port", str(port), "-a", alias, *args,
                   *extra], port, log, "https" if tls else "http")


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with ``cryptography``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def closed_port_url() -> str:
    """A URL where nothing listens (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}/v1"
