"""The extension inside a real `jupyter lab` / `jupyter server` process with the real
engine: engines stop with the server, and none outlives it even when it is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from .conftest import DEMO_MODEL_ID, pid_alive

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
def jupyter(tmp_path):
    """Start `jupyter <app>` with the extension enabled by its installed config drop-in."""
    procs = []

    def start(app: str = "server"):
        port = free_port()
        env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data"),
               "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
               "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "HF_HOME": str(tmp_path / "hf")}
        log = open(tmp_path / f"{app}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--allow-root", "--no-browser",
             f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
             "--ServerApp.base_url=/jp/", "--ModelRegistry.default_ctx_size=1024",
             "--ModelRegistry.default_parallel=1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}/jp/"
        wait_until(lambda: call(base + "api/status")[0] == 200, 60, "jupyter start")
        return proc, base, tmp_path / f"{app}.log"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def engine_pids(server_pid: int) -> list[int]:
    children = psutil.Process(server_pid).children(recursive=True)
    return [c.pid for c in children if "--alias" in c.cmdline()]


def test_engines_do_not_outlive_a_sigkilled_server(jupyter):
    proc, base, _log = jupyter("server")
    status, reply = call(base + "bodhi/v1/chat/completions", {
        "model": DEMO_MODEL_ID, "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and reply["choices"][0]["message"]["content"]
    pids = engine_pids(proc.pid)
    assert len(pids) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "engine exit")


def test_jupyter_lab_serves_models_and_stops_engines_on_sigterm(jupyter):
    proc, base, log = jupyter("lab")
    status, models = call(base + "bodhi/v1/models")
    assert DEMO_MODEL_ID in [m["id"] for m in models["data"]]
    status, reply = call(base + "bodhi/v1/embeddings", {"model": DEMO_MODEL_ID,
                                                        "input": "hello"})
    assert status == 200 and len(reply["data"][0]["embedding"]) > 0
    pids = engine_pids(proc.pid)
    assert len(pids) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0 or proc.returncode == -signal.SIGTERM
    assert not any(pid_alive(p) for p in pids)
    assert "bodhi: stopping 1 engine(s)" in Path(log).read_text()
