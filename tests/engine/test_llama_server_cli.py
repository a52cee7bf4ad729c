"""``bodhi-llama-server``, the bundled engine, run as the supervisor runs it: a subprocess
of the console script in this virtualenv, with the real demo model."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ENGINE = Path(sys.executable).with_name("bodhi-llama-server")


@pytest.fixture(scope="module", autouse=True)
def _engine_installed():
    assert ENGINE.exists(), f"{ENGINE} is missing: pip install -e '.[test]'"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENGINE), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, key: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_unknown_flag_exits_2():
    out = run("--no-such-flag", "-m", "x.gguf")
    assert out.returncode == 2
    assert "--no-such-flag" in out.stderr
    assert "unrecognized arguments" in out.stderr


def test_flags_are_not_abbreviated():
    out = run("--ctx", "512", "-m", "x.gguf")  # upstream has no prefix matching
    assert out.returncode == 2 and "--ctx" in out.stderr


def test_missing_model_file_fails_fast(tmp_path):
    missing = tmp_path / "no-such-model.gguf"
    started = time.monotonic()
    out = run("-m", str(missing), "--port", str(free_port()), timeout=10)
    assert out.returncode != 0
    assert time.monotonic() - started < 5
    assert str(missing) in out.stderr


def test_version():
    out = run("--version")
    assert out.returncode == 0
    line = out.stdout.strip()
    assert line.startswith("bodhi-llama-server (xllamacpp ") and line[-1] == ")", line


@pytest.fixture
def demo_engine(smollm2_path, tmp_path):
    port = free_port()
    log = tmp_path / "engine.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(ENGINE), "-m", str(smollm2_path), "-c", "512", "-np", "1", "-t", "2",
             "--api-key", "k", "--port", str(port), "-a", "demo"],
            stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def wait_healthy(proc: subprocess.Popen, base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"engine exited {proc.returncode}:\n{log.read_text()}"
        try:
            if get(f"{base}/health")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass  # not listening yet
        assert time.monotonic() < deadline, f"engine not healthy:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def test_serves_the_demo_model_and_stops_on_sigterm(demo_engine):
    proc, base, log = demo_engine
    wait_healthy(proc, base, log)

    status, _ = get(f"{base}/v1/models")
    assert status == 401
    status, _ = get(f"{base}/v1/models", key="wrong")
    assert status == 401
    status, body = get(f"{base}/v1/models", key="k")
    assert status == 200
    assert [m["id"] for m in json.loads(body)["data"]] == ["demo"]

    proc.send_signal(signal.SIGTERM)
    proc.wait(5)  # raises TimeoutExpired if it is still running
    assert proc.returncode == -signal.SIGTERM


def test_mmproj_flag_sets_the_projector():
    from bodhi_jupyter.engine.llama_server_cli import build_params, build_parser

    args = build_parser().parse_args(["-m", "model.gguf", "--mmproj", "/models/mmproj.gguf"])
    assert build_params(args).mmproj.path == "/models/mmproj.gguf"
    assert build_params(build_parser().parse_args(["-m", "model.gguf"])).mmproj.path == ""


def test_allowed_alias_flags_reach_the_engine_params():
    """Every flag an alias may add (models/server_flags.py) must mean something here."""
    from bodhi_jupyter.engine.llama_server_cli import build_params, build_parser
    from bodhi_jupyter.models.server_flags import ALLOWED

    args = build_parser().parse_args([
        "-m", "m.gguf", "-tb", "1", "-fa", "off", "--no-cont-batching", "--rope-freq-base",
        "20000", "--rope-freq-scale", "0.5", "--temp", "0.2", "--top-k", "5", "--top-p", "0.8",
        "--min-p", "0.1", "--repeat-penalty", "1.2", "--seed", "7", "-n", "3"])
    p = build_params(args)
    assert (p.cpuparams_batch.n_threads, int(p.flash_attn_type), p.cont_batching) == (1, 0, False)
    assert (p.rope_freq_base, p.rope_freq_scale, p.n_predict) == (20000, 0.5, 3)
    s = p.sampling
    assert (s.top_k, s.seed) == (5, 7)
    assert [round(v, 3) for v in (s.temp, s.top_p, s.min_p, s.penalty_repeat)] == [
        0.2, 0.8, 0.1, 1.2]
    parser = build_parser()
    for flag in ALLOWED:  # the parser knows every spelling the list allows
        for name in flag.names:
            assert any(name in a.option_strings for a in parser._actions), name
