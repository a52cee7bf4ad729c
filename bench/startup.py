"""What the extension adds to a Jupyter server's start: the same `jupyter server` started with
the extension on and off, alternating, on an existing and on a fresh data directory.

Start time: from spawning the process until ``api/status`` answers 200, and the CPU time
the server process used until then (robust when other work shares the machine). Memory: the
server's resident set when it first answers, and again once the extension has opened its
storage (a bodhi request, which waits for it; the server without the extension gets the
same wait and an ``api/status`` call)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

OFF = "--ServerApp.jpserver_extensions=bodhi_jupyter=False"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, timeout: float = 5) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()
        return r.status


def start_once(root: Path, extension: bool, timeout: float = 60) -> dict:
    """One start; ``root`` holds the data, config and runtime dirs (kept between calls for
    an "existing" data directory)."""
    for sub in ("data", "runtime", "config", "work"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_DATA_DIR": str(root / "data"),
           "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "JUPYTER_CONFIG_DIR": str(root / "config"), "HF_HOME": str(root / "hf")}
    cmd = [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
           "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root / 'work'}"]
    if not extension:
        cmd.append(OFF)
    base = f"http://127.0.0.1:{port}/"
    with open(root / "server.log", "ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = t0 + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {proc.returncode}: see "
                                   f"{root / 'server.log'}")
            try:
                if _get(base + "api/status", token, timeout=2) == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"jupyter server not up within {timeout:g} s")
            time.sleep(0.01)
        start_ms = (time.perf_counter() - t0) * 1e3
        p = psutil.Process(proc.pid)
        rss_up = p.memory_info().rss / 2**20
        cpu = p.cpu_times()
        start_cpu_ms = (cpu.user + cpu.system) * 1e3
        time.sleep(1.0)  # the same settling time for both
        _get(base + ("bodhi/v1/models" if extension else "api/status"), token, timeout=60)
        rss_settled = p.memory_info().rss / 2**20
        return {"start_ms": start_ms, "start_cpu_ms": start_cpu_ms, "rss_up_mib": rss_up,
                "rss_settled_mib": rss_settled}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def compile_package() -> int:
    """Byte-compile bodhi_jupyter, as ``pip install`` does for an installed package, and
    return how many files needed it. A checkout imported with PYTHONDONTWRITEBYTECODE set
    (as on the development machine) would otherwise compile every module at every start,
    while jupyter_server, installed by pip, starts from its bytecode (``python -X
    importtime`` of ``bodhi_jupyter.app`` here: 220 ms uncompiled, 57 ms compiled), which
    is not what a user's start costs."""
    import compileall
    import importlib.util
    import py_compile
    package = Path(importlib.util.find_spec("bodhi_jupyter").origin).parent
    stale = 0
    for source in package.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
            stale += 1
    compileall.compile_dir(str(package), quiet=1,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    return stale


def measure(tmp: Path, rounds: int = 6, fresh_rounds: int = 3) -> dict:
    """Alternating on/off starts; the first start on an existing dir creates it and is not
    counted. The package is byte-compiled first (``compile_package``)."""
    compiled = compile_package()
    runs = {(ext, kind): [] for ext in (True, False) for kind in ("existing", "fresh")}
    existing = {True: tmp / "existing-on", False: tmp / "existing-off"}
    for ext in (True, False):
        start_once(existing[ext], ext)  # creates the data dir (and the database)
    for i in range(rounds):
        for ext in ((True, False) if i % 2 == 0 else (False, True)):
            runs[(ext, "existing")].append(start_once(existing[ext], ext))
    for i in range(fresh_rounds):
        for ext in ((True, False) if i % 2 == 0 else (False, True)):
            root = tmp / f"fresh-{ext}-{i}"
            runs[(ext, "fresh")].append(start_once(root, ext))
            shutil.rmtree(root, ignore_errors=True)
    out = {}
    for (ext, kind), rs in runs.items():
        out[f"{'on' if ext else 'off'}/{kind}"] = {
            "n": len(rs), **{k: statistics.median(r[k] for r in rs)
                            for k in ("start_ms", "start_cpu_ms", "rss_up_mib",
                                      "rss_settled_mib")},
            "start_ms_runs": [round(r["start_ms"]) for r in rs]}
    out["compiled_first"] = compiled
    return out


def report(res: dict, target_ms: float, target_mib: float) -> list[str]:
    lines = ["[0] start-up, extension on vs off (median of alternating starts; start = "
             "spawn until api/status answers)",
             f"    {'data dir':<10}{'':<5}{'start ms':>10}{'CPU ms':>8}{'RSS when up':>13}"
             f"{'RSS settled':>13}   starts (ms)",
             f"    bodhi_jupyter byte-compiled first, as pip install does "
             f"({res.get('compiled_first', 0)} modules needed it)"]
    for kind in ("existing", "fresh"):
        for ext in ("on", "off"):
            r = res[f"{ext}/{kind}"]
            lines.append(f"    {kind:<10}{ext:<5}{r['start_ms']:>10.0f}{r['start_cpu_ms']:>8.0f}"
                         f"{r['rss_up_mib']:>12.1f}M"
                         f"{r['rss_settled_mib']:>12.1f}M   {r['start_ms_runs']}")
        on, off = res[f"on/{kind}"], res[f"off/{kind}"]
        d_ms = on["start_ms"] - off["start_ms"]
        d_cpu = on["start_cpu_ms"] - off["start_cpu_ms"]
        d_up = on["rss_up_mib"] - off["rss_up_mib"]
        d_set = on["rss_settled_mib"] - off["rss_settled_mib"]
        line = (f"    {kind}: extension adds {d_ms:+.0f} ms ({on['start_ms'] / off['start_ms']:.2f}x)"
                f" and {d_cpu:+.0f} ms CPU to the start, {d_up:+.1f} MiB when up, "
                f"{d_set:+.1f} MiB settled")
        if kind == "existing":
            ok = d_ms <= target_ms and d_set <= target_mib
            line += (f"   target <= {target_ms:g} ms, <= {target_mib:g} MiB -> "
                     f"{'PASS' if ok else 'MISS'}")
        lines.append(line)
    return lines
