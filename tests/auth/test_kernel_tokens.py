"""Kernel credentials without HTTP: minting into the launch env, revoking on removal,
restarts, renames, failed starts, server stop and what a killed run left."""

from __future__ import annotations

import asyncio
import os
import types

import pytest

from bodhi_jupyter.auth.kernel_tokens import (API_KEY_VAR, BASE_URL_VAR, KernelCredentials,
                                              local_api_url, server_key)
from bodhi_jupyter.auth.tokens import TokenStore
from bodhi_jupyter.errors import BodhiAPIError

URL = "http://127.0.0.1:8888/jp/bodhi/v1"


class StandInKernelManager:
    """A deployment's own kernel manager, as little of one as jupyter_server relies on:
    start_kernel(**kwargs) -> id, remove_kernel(id), update_env(kernel_id=, env=)."""

    def __init__(self, fail: bool = False):
        self.kernels: dict[str, dict] = {}  # id -> launch kwargs (what a restart reuses)
        self.fail = fail
        self.count = 0

    def __contains__(self, kernel_id):
        return kernel_id in self.kernels

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("kernel failed to start")
        self.count += 1
        kernel_id = kernel_id or f"k{self.count}"
        self.kernels[kernel_id] = {"path": path, **kwargs}
        return kernel_id

    def remove_kernel(self, kernel_id):
        return self.kernels.pop(kernel_id, None)

    async def shutdown_kernel(self, kernel_id):
        self.remove_kernel(kernel_id)

    def update_env(self, *, kernel_id, env):
        self.kernels[kernel_id].setdefault("env", {}).update(env)


@pytest.fixture
def store(database):
    return TokenStore(database)


def credentials(store, tmp_path, key="local:test-host:1") -> KernelCredentials:
    async def ready():
        return None

    return KernelCredentials(store, owner=lambda: "ann", ready=ready, base_url=lambda: URL,
                             root_dir=str(tmp_path), key=key)


async def settle(creds: KernelCredentials):
    """Background bookkeeping (deletes, renames) is done."""
    while creds._pending:
        await asyncio.wait(list(creds._pending))


async def test_kernel_gets_its_own_inference_token_named_after_the_notebook(store, tmp_path):
    km = StandInKernelManager()
    creds = credentials(store, tmp_path)
    creds.install(km)
    # the way jupyter_server's SessionManager starts a notebook's kernel
    env = {**os.environ, "JPY_SESSION_NAME": str(tmp_path / "work" / "nb.ipynb")}
    kid = await km.start_kernel(path="work", kernel_name="python3", env=env)
    launched = km.kernels[kid]["env"]
    assert launched[BASE_URL_VAR] == URL
    token = launched[API_KEY_VAR]
    assert API_KEY_VAR not in env  # the caller's dict is not changed
    info = store.authenticate(token)
    assert (info.owner, info.scope, info.name) == ("ann", "write", "kernel: work/nb.ipynb")
    assert (info.kernel_id, info.notebook) == (kid, "work/nb.ipynb")

    km.remove_kernel(kid)  # a DELETE, a cull, a dead kernel, shutdown_all: all end here
    with pytest.raises(BodhiAPIError) as e:  # refused at once, before the row is gone
        store.authenticate(token)
    assert e.value.status == 401
    await settle(creds)
    assert store.get(info.id) is None


async def test_env_defaults_to_the_server_environment_and_path(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SOMETHING_OF_THE_SERVER", "1")
    monkeypatch.setenv("JPY_SESSION_NAME", "the-notebook-that-started-this-server.ipynb")
    km = StandInKernelManager()
    creds = credentials(store, tmp_path)
    creds.install(km)
    kid = await km.start_kernel(path="dir")  # POST api/kernels: no env, no notebook
    env = km.kernels[kid]["env"]
    assert env["SOMETHING_OF_THE_SERVER"] == "1" and env[API_KEY_VAR].startswith("bodhi_")
    assert store.authenticate(env[API_KEY_VAR]).name == "kernel: dir"


async def test_rename_keeps_the_credential_and_renames_the_token(store, tmp_path):
    km = StandInKernelManager()
    creds = credentials(store, tmp_path)
    creds.install(km)
    kid = await km.start_kernel(env={"JPY_SESSION_NAME": "a.ipynb"})
    token = km.kernels[kid]["env"][API_KEY_VAR]
    # a rename: the session sends a fresh copy of the server's env (which may carry
    # BODHI_* of its own); the kernel's credential stays for the next restart
    km.update_env(kernel_id=kid, env={"JPY_SESSION_NAME": "b.ipynb", API_KEY_VAR: "other"})
    await settle(creds)
    assert km.kernels[kid]["env"][API_KEY_VAR] == token
    info = store.authenticate(token)
    assert (info.name, info.notebook) == ("kernel: b.ipynb", "b.ipynb")
    # an existing kernel id: no new kernel, no new token
    assert await km.start_kernel(kernel_id=kid) == kid
    assert [t.name for t in store.list("ann")] == ["kernel: b.ipynb"]


async def test_failed_start_deletes_the_token(store, tmp_path):
    km = StandInKernelManager(fail=True)
    credentials(store, tmp_path).install(km)
    with pytest.raises(RuntimeError):
        await km.start_kernel(env={"JPY_SESSION_NAME": "x.ipynb"})
    assert store.list(None) == []


async def test_no_credential_when_storage_fails_but_the_kernel_starts(store, tmp_path):
    async def broken():
        raise BodhiAPIError(503, "The bodhi database could not be opened")

    km = StandInKernelManager()
    KernelCredentials(store, owner=lambda: "ann", ready=broken, base_url=lambda: URL,
                      root_dir=str(tmp_path)).install(km)
    kid = await km.start_kernel(env={"A": "1"})
    assert API_KEY_VAR not in km.kernels[kid]["env"]


async def test_stop_revokes_this_servers_tokens_only(store, tmp_path):
    km = StandInKernelManager()
    creds = credentials(store, tmp_path, key="local:test-host:1")
    creds.install(km)
    other = credentials(store, tmp_path, key="local:test-host:2")
    other.install(StandInKernelManager())
    kid = await km.start_kernel(env={})
    token = km.kernels[kid]["env"][API_KEY_VAR]
    await other.kernel_manager.start_kernel(env={})
    await creds.stop()
    with pytest.raises(BodhiAPIError):
        store.authenticate(token)
    assert [t.name for t in store.list(None)] == ["kernel: (no notebook)"]  # the other's
    km.remove_kernel(kid)  # shutdown_all after stop: nothing left to do, nothing fails


async def test_purge_deletes_what_a_killed_run_left(store, tmp_path):
    dead_pid = 2 ** 22 + 12345  # above pid_max: no such process
    killed = credentials(store, tmp_path, key=f"local:test-host:{dead_pid}")
    killed.install(StandInKernelManager())
    await killed.kernel_manager.start_kernel(env={})
    alive = credentials(store, tmp_path, key=f"local:test-host:{os.getppid()}")
    alive.install(StandInKernelManager())
    await alive.kernel_manager.start_kernel(env={})
    elsewhere = credentials(store, tmp_path, key=f"local:other-host:{dead_pid}")
    elsewhere.install(StandInKernelManager())
    await elsewhere.kernel_manager.start_kernel(env={})
    survivors_before = len(store.list(None))

    fresh = credentials(store, tmp_path, key=f"local:test-host:{os.getpid()}")
    assert fresh.purge_stale() == 1  # only the dead server's, on this host
    assert len(store.list(None)) == survivors_before - 1

    hub_run = credentials(store, tmp_path, key="hub:/user/ann/")
    hub_run.install(StandInKernelManager())
    await hub_run.kernel_manager.start_kernel(env={})
    # the hub runs one instance of a user's server at a time: what has its key is stale
    assert credentials(store, tmp_path, key="hub:/user/ann/").purge_stale() == 1
    assert credentials(store, tmp_path, key="hub:/user/bob/").purge_stale() == 0


def test_server_key(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    assert server_key().endswith(f":{os.getpid()}") and server_key().startswith("local:")
    monkeypatch.setenv("JUPYTERHUB_USER", "ann")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ann/lab/")
    assert server_key() == "hub:/user/ann/lab/"


@pytest.mark.parametrize("ip,base,url", [
    ("", "/", "http://127.0.0.1:9/bodhi/v1"),
    ("0.0.0.0", "/jp/", "http://127.0.0.1:9/jp/bodhi/v1"),
    ("localhost", "/user/ann/", "http://127.0.0.1:9/user/ann/bodhi/v1"),
    ("::", "/", "http://[::1]:9/bodhi/v1"),
    ("10.1.2.3", "/a%40b/", "http://10.1.2.3:9/a%40b/bodhi/v1"),
])
def test_local_api_url(ip, base, url):
    app = types.SimpleNamespace(sock="", ip=ip, port=9, base_url=base, certfile="")
    assert local_api_url(app) == url
    assert local_api_url(types.SimpleNamespace(sock="/tmp/s.sock")) is None
