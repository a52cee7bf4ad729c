"""Independently started OpenAI-compatible servers that tests register as remote upstreams:
the real engine (``bodhi-llama-server`` with the demo model) and the fake one."""

from __future__ import annotations

import contextlib
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

    def __init__(self, cmd: list[str], port: int, log: Path):
        self.port, self.log = port, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_healthy(self, timeout: float) -> "Server":
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"server exited:\n{self.log.read_text()}"
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health",
                                            timeout=1) as r:
                    if r.status == 200:
                        return self
            assert time.monotonic() < deadline, f"not healthy:\n{self.log.read_text()[-2000:]}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def llama_server(model_path, log: Path, api_key: str, alias: str = "demo") -> Server:
    port = free_port()
    return Server([str(ENGINE), "-m", str(model_path), "-c", "1024", "-np", "2", "-t", "1",
                   "--api-key", api_key, "--port", str(port), "-a", alias], port, log)


def fake_server(log: Path, *args: str, alias: str = "fake") -> Server:
    port = free_port()
    return Server([sys.executable, str(FAKE_SERVER), "--port", str(port), "-a", alias, *args],
                  port, log)


def closed_port_url() -> str:
    """A URL where nothing listens (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}/v1"
