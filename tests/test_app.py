"""The extension inside a real `jupyter lab` / `jupyter server` process with the real
engine: engines stop with the server, and none outlives it even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from .conftest import DEMO_MODEL_ID, pid_alive
from .live_server import call, jupyter, wait_until  # noqa: F401  (jupyter is a fixture)


def engine_pids(server_pid: int) -> list[int]:
    pids = []
    for child in psutil.Process(server_pid).children(recursive=True):
        try:  # a short-lived child may end (or wait to be reaped) while we look
            if "--alias" in child.cmdline():
                pids.append(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return pids


def test_engines_do_not_outlive_a_sigkilled_server(jupyter):
    proc, base, _log, _env = jupyter("server")
    status, reply = call(base + "bodhi/v1/chat/completions", {
        "model": DEMO_MODEL_ID, "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and reply["choices"][0]["message"]["content"]
    pids = engine_pids(proc.pid)
    assert len(pids) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "engine exit")


def test_jupyter_lab_preloads_serves_and_stops_engines_on_sigterm(jupyter):
    proc, base, log, _env = jupyter("lab", f"--BodhiApp.preload={DEMO_MODEL_ID}")
    wait_until(lambda: len(engine_pids(proc.pid)) == 1, 60, "preloaded engine")
    (preloaded,) = engine_pids(proc.pid)
    status, models = call(base + "bodhi/v1/models")
    assert DEMO_MODEL_ID in [m["id"] for m in models["data"]]
    status, reply = call(base + "bodhi/v1/chat/completions", {
        "model": DEMO_MODEL_ID, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200
    assert engine_pids(proc.pid) == [preloaded]  # the request used the preloaded engine
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not pid_alive(preloaded)
    assert "bodhi: stopping 1 engine(s)" in Path(log).read_text()
