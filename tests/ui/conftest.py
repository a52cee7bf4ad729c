"""A real `jupyter lab` with the extension and the real engine (SmolLM2), driven by Debian's
chromium through Python playwright. Screenshots go to tests/ui/artifacts/ (git-ignored)."""

from __future__ import annotations

import json
import os
import re
import urllib.request

import subprocess
import sys
from pathlib import Path

import pytest

from ..live_server import TOKEN, call, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage"]


class Lab:
    """One `jupyter lab` whose directories (and so its database) outlive a restart."""

    def __init__(self, root: Path, config: dict | None = None, args: list[str] | None = None,
                 cwd: Path | None = None):
        self.root = root
        self.args = args if args is not None else [f"--ServerApp.root_dir={root / 'work'}"]
        self.cwd = cwd or root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/lab-ui/"
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "JUPYTER_DATA_DIR": str(root / "data"),
                    "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
                    "JUPYTER_CONFIG_DIR": str(root / "config"), "HF_HOME": str(root / "hf"),
                    "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}
        notify = root / "settings" / "@jupyterlab" / "apputils-extension"
        notify.mkdir(parents=True, exist_ok=True)
        (notify / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        (root / "work").mkdir(exist_ok=True)
        # an alias whose file is no model: its engine fails to start, with a log to show
        bad = root / "not-a-model.gguf"
        bad.write_bytes(b"GGUF" + b"\0" * 64)
        (root / "config").mkdir(exist_ok=True)
        (root / "config" / "jupyter_server_config.json").write_text(json.dumps(
            config if config is not None else
            {"ModelRegistry": {"aliases": {"broken-model": {"model": str(bad)}}}}))

    def start(self) -> None:
        log = open(self.root / "lab.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser",
             f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={TOKEN}", "--ServerApp.base_url=/lab-ui/",
             "--LabApp.expose_app_in_browser=True", "--ModelRegistry.default_ctx_size=2048",
             "--ModelRegistry.default_parallel=1", "--LlamaServerLauncher.threads=2",
             *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        wait_until(lambda: call(self.base + "api/status")[0] == 200, 90, "jupyter lab start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, path: str, body: dict | None = None):
        return call(self.base + path, body)[1]

    def send(self, method: str, path: str, body: dict | None = None) -> dict:
        """PUT or DELETE as the server's owner (``api`` does GET and POST)."""
        req = urllib.request.Request(
            self.base + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def printed_url(self) -> str:
        """The URL Jupyter prints for people to open (with the token it hides put back)."""
        log = (self.root / "lab.log").read_text()
        found = re.findall(r"(http://127\.0\.0\.1:%d/\S*)" % self.port, log)
        assert found, log[-2000:]
        return found[-1].replace("token=...", f"token={TOKEN}")


@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    """pytest-jupyter's loop would adopt (and then close) playwright's running loop; these
    tests are synchronous and need none."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    """No in-process Jupyter server here to clean up (the lab is a subprocess)."""
    yield


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("browser tests need Debian's chromium (make test installs it as root)")
    lab = Lab(tmp_path_factory.mktemp("lab"))
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, lab):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900},
                              permissions=["clipboard-read", "clipboard-write"])
    page = ctx.new_page()
    ARTIFACTS.mkdir(exist_ok=True)
    console = open(ARTIFACTS / "console.log", "w")
    page.on("console", lambda m: m.type in ("error", "warning")
            and console.write(f"{m.type}: {m.text}\n") and console.flush())
    page.on("pageerror", lambda e: console.write(f"pageerror: {e}\n") and console.flush())
    page.set_default_timeout(30_000)
    page.goto(f"{lab.base}lab?token={TOKEN}")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    yield page
    ctx.close()


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def set_theme(page, light: bool) -> None:
    """Switch JupyterLab's theme through its own command and wait until it applies."""
    name = "JupyterLab Light" if light else "JupyterLab Dark"
    page.evaluate("t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})",
                  name)
    page.wait_for_function("want => document.body.dataset.jpThemeLight === want",
                           arg="true" if light else "false")
    # the theme's variables are in place once the panel's background follows them
    page.wait_for_function(
        "light => { const e = document.querySelector('.bodhi-Panel'); if (!e) return true;"
        " const [r, g, b] = getComputedStyle(e).backgroundColor.match(/\\d+/g).map(Number);"
        " return light ? r + g + b > 600 : r + g + b < 200; }", arg=light)
    # JupyterLab shows its splash while a theme loads: wait until it has gone
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def shot(page, artifacts: Path, name: str) -> None:
    """The page as it is now, in the light and in the dark theme (back to light after)."""
    set_theme(page, True)
    page.screenshot(path=str(artifacts / f"light-{name}.png"))
    set_theme(page, False)
    page.screenshot(path=str(artifacts / f"dark-{name}.png"))
    set_theme(page, True)


MODEL_SECTIONS = ("processes", "files", "aliases", "upstreams", "pulls")


def section(page, name: str):
    """One section of the panel's Models view."""
    return page.locator(f".bodhi-Section[data-section={name}]")


def only_open(page, *names: str) -> None:
    """Open the named sections of the Models view and close the others, so that a
    screenshot shows what it is about."""
    for s in MODEL_SECTIONS:
        toggle = section(page, s).locator(".bodhi-SectionToggle")
        if (toggle.get_attribute("aria-expanded") == "true") != (s in names):
            toggle.click()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A screenshot of the page when a browser test fails, next to the others."""
    outcome = yield
    report = outcome.get_result()
    page = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and page is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"failed-{item.name}.png"))
        except Exception:  # the page itself may be what broke
            pass
