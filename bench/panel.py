#!/usr/bin/env python3
"""What the JupyterLab panel costs and how fast replies reach the screen, in a real browser
(Debian's chromium through playwright) against real `jupyter lab` servers.

    python bench/panel.py            # 7 start pairs, a 2,000-chunk reply
    python bench/panel.py --quick    # 3 start pairs, a 500-chunk reply

1. Bundle: the extension's files, split into what JupyterLab loads at start (remoteEntry
   and the plugin chunk) and what loads when the panel is first shown (the panel chunk).
2. Start: time from navigation until JupyterLab's `app.restored`, alternating page loads
   between a server with the extension's front end and one with it disabled
   (`disabledExtensions`), each load in a fresh browser context. The panel is told not to
   open itself, so this is the cost of having the extension installed.
3. Chunk to screen: the stand-in engine writes each stream chunk as " @<ms since the
   epoch>" as it sends it (`[stamp=1]`); the page notes when the text containing each
   stamp has been rendered (the panel's render hook fires after rendermime has rendered
   it). Same machine, same clock. This includes the engine -> Jupyter proxy -> browser
   path, so it bounds the server-to-screen time from above.

Results are printed and written to bench/results/panel.json. Everything runs in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live_server import TOKEN, call, free_port, wait_until  # noqa: E402
from tests.conftest import demo_model_path  # noqa: E402
from tests.ui.conftest import CHROME_ARGS, CHROMIUM  # noqa: E402

STATIC = ROOT / "bodhi_jupyter" / "labextension" / "static"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def start_lab(root: Path, name: str, *, disable_panel: bool, fake_engine: Path) -> tuple:
    home = root / name
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "work").mkdir()
    settings = home / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (settings / "bodhi-jupyter").mkdir()
    (settings / "bodhi-jupyter" / "plugin.jupyterlab-settings").write_text(
        json.dumps({"openOnFirstStart": False}))
    if disable_panel:
        (home / "config" / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"bodhi-jupyter": True}}))
    model = demo_model_path()  # the stand-in ignores it, but an alias needs a model file
    (home / "config" / "jupyter_server_config.json").write_text(json.dumps({
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine)},
        "ModelRegistry": {"aliases": {"stamp": {"model": str(model)}}}}))
    port = free_port()
    env = {**os.environ, "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "HF_HOME": str(home / "hf"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log = open(home / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser",
         f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
         "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={home / 'work'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: call(base + "api/status")[0] == 200, 90, f"{name} start")
    return proc, base


def bundle() -> dict:
    files = {p.name: p.stat().st_size for p in STATIC.glob("*.js")}
    lazy = {n: s for n, s in files.items() if "bodhi-Messages" in (STATIC / n).read_text()}
    start = {n: s for n, s in files.items() if n.startswith("remoteEntry")
             or "bodhi-jupyter:plugin" in (STATIC / n).read_text()}
    return {"total_bytes": sum(files.values()), "at_start_bytes": sum(start.values()),
            "lazy_panel_bytes": sum(lazy.values()), "files": files}


def start_time_ms(browser, base: str) -> float:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(f"{base}lab?token={TOKEN}")
    page.wait_for_function("window.jupyterapp !== undefined", timeout=90_000)
    restored = page.evaluate("window.jupyterapp.restored.then(() => performance.now())")
    ctx.close()
    return restored


def chunk_to_screen(browser, base: str, chunks: int, delay: float) -> dict:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(f"{base}lab?token={TOKEN}")
    page.wait_for_function("window.jupyterapp !== undefined", timeout=90_000)
    page.evaluate("window.jupyterapp.restored")
    page.evaluate("window.jupyterapp.commands.execute('bodhi:open-chat')")
    page.wait_for_function("[...document.querySelectorAll('.bodhi-ModelPicker option')]"
                           ".some(o => o.value === 'stamp')", timeout=60_000)
    page.locator(".bodhi-ModelPicker select").select_option("stamp")
    page.evaluate("""() => {
        window.__lat = []; window.__seen = 0; window.__frames = [];
        const re = / @(\\d+\\.\\d)/g;
        window.bodhiRenderHook = (text, at, streaming) => {
            if (!streaming) return;
            const stamps = [...text.matchAll(re)].map(m => parseFloat(m[1]));
            for (const s of stamps.slice(window.__seen)) window.__lat.push(at - s);
            window.__seen = stamps.length;
        };
        let last = performance.now();
        const tick = () => { const now = performance.now(); window.__frames.push(now - last);
                             last = now; if (window.__frames.length < 100000)
                             requestAnimationFrame(tick); };
        requestAnimationFrame(tick);
    }""")
    box = page.locator(".bodhi-Input")
    box.fill(f"[stamp=1] [chunks={chunks}] [delay={delay}] go")
    started = time.perf_counter()
    box.press("Enter")
    page.locator(".bodhi-Message.bodhi-mod-assistant[data-status=complete]").wait_for(
        timeout=600_000)
    wall = time.perf_counter() - started
    lat = page.evaluate("window.__lat")
    frames = page.evaluate("window.__frames")
    ctx.close()
    assert len(lat) >= chunks * 0.99, f"only {len(lat)} of {chunks} chunks seen on screen"
    return {"chunks": chunks, "seen": len(lat), "p50_ms": round(pct(lat, 50), 1),
            "p95_ms": round(pct(lat, 95), 1), "max_ms": round(max(lat), 1),
            "frame_p95_ms": round(pct(frames, 95), 1), "reply_wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--aa", action="store_true", help="check the method: both servers with "
                    "the extension, so the 'overhead' shows the noise and any bias")
    args = ap.parse_args()
    pairs, chunks = (3, 500) if args.quick else (7, 2000)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bodhi-bench-panel-"))
    procs = []
    try:
        fake = tmp / "fake-llama-server"
        fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" '
                        f'"{ROOT / "tests" / "fake_llama_server.py"}" "$@"\n')
        fake.chmod(0o755)
        with_proc, with_base = start_lab(tmp, "with", disable_panel=False, fake_engine=fake)
        procs.append(with_proc)
        without_proc, without_base = start_lab(tmp, "without", disable_panel=not args.aa,
                                               fake_engine=fake)
        procs.append(without_proc)
        results = {"bundle": bundle()}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            start_time_ms(browser, with_base), start_time_ms(browser, without_base)  # warm
            with_ms, without_ms = [], []
            for i in range(pairs):
                order = [(with_base, with_ms), (without_base, without_ms)]
                for base, out in (order if i % 2 == 0 else order[::-1]):
                    out.append(start_time_ms(browser, base))
            diffs = [a - b for a, b in zip(with_ms, without_ms)]
            results["start"] = {
                "pairs": pairs, "with_median_ms": round(statistics.median(with_ms)),
                "without_median_ms": round(statistics.median(without_ms)),
                "overhead_median_ms": round(statistics.median(diffs)),
                "overhead_p95_ms": round(pct(diffs, 95))}
            results["chunk_to_screen"] = chunk_to_screen(browser, with_base, chunks, 0.005)
            browser.close()
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    b, s, c = results["bundle"], results["start"], results["chunk_to_screen"]
    print(f"bundle: {b['total_bytes'] / 1024:.1f} KiB in all; {b['at_start_bytes'] / 1024:.1f} "
          f"KiB at start, {b['lazy_panel_bytes'] / 1024:.1f} KiB when the panel opens")
    print(f"JupyterLab start (navigation -> restored), median of {s['pairs']} alternating "
          f"loads: with {s['with_median_ms']} ms, without {s['without_median_ms']} ms; "
          f"overhead median {s['overhead_median_ms']} ms, p95 {s['overhead_p95_ms']} ms")
    print(f"chunk to screen over a {c['chunks']}-chunk reply: p50 {c['p50_ms']} ms, p95 "
          f"{c['p95_ms']} ms, max {c['max_ms']} ms; frame interval p95 {c['frame_p95_ms']} ms;"
          f" reply took {c['reply_wall_s']} s")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "panel.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
