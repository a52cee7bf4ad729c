"""A real `jupyter server` / `jupyter lab` subprocess with the extension, for tests that
need the whole process (signals, kernels)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

TOKEN = "test-token-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def jupyter(tmp_path, converted_models_dir):
    """Start `jupyter <app>` with the extension enabled by its installed config drop-in
    (packaged models converted once per session, not per server)."""
    procs = []

    def start(app: str = "server", *extra_args: str):
        port = free_port()
        env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data"),
               "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
               "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "HF_HOME": str(tmp_path / "hf")}
        log = open(tmp_path / f"{app}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--allow-root", "--no-browser",
             f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
             "--ServerApp.base_url=/jp/", "--ModelRegistry.default_ctx_size=1024",
             "--ModelRegistry.default_parallel=1",
             f"--ModelDiscovery.converted_dir={converted_models_dir}", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}/jp/"
        wait_until(lambda: call(base + "api/status")[0] == 200, 60, "jupyter start")
        return proc, base, tmp_path / f"{app}.log", env

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
