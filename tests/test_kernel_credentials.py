"""Kernel credentials in a real `jupyter server` with the real engine: a notebook's kernel
finds its server with no configuration, its key may only do inference, usage shows the
notebook, and the key dies with the kernel (DELETE, cull, server stop) without ever being
logged, saved in a notebook or put on a command line."""

from __future__ import annotations

import json
import signal
import sqlite3
from contextlib import closing

import httpx
import psutil
import pytest

from .conftest import DEMO_MODEL_ID
from .kernel_exec import KernelChannels, start_session
from .live_server import TOKEN, jupyter, wait_until  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(240)

SHOW_ENV = ("import os, json\n"
            "print(json.dumps({k: os.environ.get(k) for k in ('BODHI_BASE_URL', "
            "'BODHI_API_KEY')}))")
CHAT = f"""
import bodhi_jupyter
llm = bodhi_jupyter.client(max_retries=0, timeout=120)
reply = llm.chat.completions.create(model={DEMO_MODEL_ID!r}, max_tokens=8, temperature=0,
    messages=[{{"role": "system", "content": "You are a helpful assistant."}},
              {{"role": "user", "content": "What is the capital of France?"}}])
print(reply.choices[0].message.content)
"""
ASYNC_MODELS = """
import bodhi_jupyter
models = await bodhi_jupyter.async_client(max_retries=0).models.list()
print(sorted(m.id for m in models.data))
"""


def status_with(base: str, key: str, method: str, path: str, **kwargs) -> int:
    return httpx.request(method, base + path, timeout=30,
                         headers={"Authorization": f"Bearer {key}"}, **kwargs).status_code


async def kernel_env(base: str, kernel_id: str) -> tuple[KernelChannels, dict]:
    channels = await KernelChannels.connect(base, TOKEN, kernel_id)
    env = json.loads((await channels.execute(SHOW_ENV)).check().stdout)
    return channels, env


def new_notebook(base: str, path: str) -> None:
    r = httpx.put(base + f"api/contents/{path}", timeout=30,
                  headers={"Authorization": f"token {TOKEN}"},
                  json={"type": "notebook", "content": {
                      "nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}})
    assert r.status_code in (200, 201), r.text


async def test_kernel_credential_end_to_end(jupyter, tmp_path):
    proc, base, log, _env = jupyter(
        "server", "--log-level=DEBUG", "--MappingKernelManager.cull_idle_timeout=4",
        "--MappingKernelManager.cull_interval=1")
    (tmp_path / "work").mkdir()
    for name in ("analysis", "idle", "last"):
        new_notebook(base, f"work/{name}.ipynb")
    keys = []

    # a notebook's kernel gets the server's own local URL and a key of its own
    session_a, kernel_a = start_session(base, TOKEN, "work/analysis.ipynb")
    channels, env = await kernel_env(base, kernel_a)  # stays connected: never culled
    assert env["BODHI_BASE_URL"] == base + "bodhi/v1"
    key = env["BODHI_API_KEY"]
    assert key.startswith("bodhi_") and key != TOKEN
    keys.append(key)

    # zero-config clients chat with the real engine
    out = (await channels.execute(CHAT)).check().stdout
    assert "Paris" in out, out
    out = (await channels.execute(ASYNC_MODELS)).check().stdout
    assert DEMO_MODEL_ID in out, out

    # the key is the owner's, for inference only
    me = httpx.get(base + "bodhi/app/user", headers={"Authorization": f"Bearer {key}"}).json()
    assert (me["auth_method"], me["scope"], me["token"]["name"]) == (
        "bodhi_token", "write", "kernel: work/analysis.ipynb"), me
    for method, path, body in [
            ("GET", "bodhi/app/tokens", None),
            ("POST", "bodhi/app/tokens", {"name": "more", "scope": "read"}),
            ("GET", "bodhi/app/settings", None),
            ("PUT", "bodhi/app/settings/EngineSupervisor.keep_alive", {"value": 5}),
            ("POST", "bodhi/app/aliases", {"name": "x", "model": DEMO_MODEL_ID}),
            ("GET", "bodhi/app/usage?user=someone-else", None),
            ("GET", "bodhi/app/processes?user=*", None)]:
        assert status_with(base, key, method, path, json=body) == 403, (method, path)

    # usage by notebook (as the owner sees it with the Jupyter token)
    usage = httpx.get(base + "bodhi/app/usage?group_by=notebook,model", timeout=30,
                      headers={"Authorization": f"token {TOKEN}"}).json()["data"]
    mine = [r for r in usage if r["notebook"] == "work/analysis.ipynb"]
    assert [(r["model"], r["requests"]) for r in mine] == [(DEMO_MODEL_ID, 1)], usage
    assert mine[0]["completion_tokens"] > 0

    # saving the notebook with its outputs writes no key
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "source": CHAT,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": out}]}]}
    r = httpx.put(base + "api/contents/work/analysis.ipynb", timeout=30,
                  headers={"Authorization": f"token {TOKEN}"},
                  json={"type": "notebook", "content": nb})
    assert r.status_code == 200, r.text

    # a culled kernel's key is refused
    session_b, kernel_b = start_session(base, TOKEN, "work/idle.ipynb")
    idle_channels, env_b = await kernel_env(base, kernel_b)
    keys.append(env_b["BODHI_API_KEY"])
    assert env_b["BODHI_API_KEY"] != key
    idle_channels.close()  # no connection, idle: culled after 4 s
    wait_until(lambda: status_with(base, env_b["BODHI_API_KEY"], "GET",
                                   "bodhi/app/user") == 401, 30, "the culled kernel's key refused")
    assert status_with(base, TOKEN, "GET", f"api/kernels/{kernel_b}") == 404
    assert status_with(base, key, "GET", "bodhi/app/user") == 200  # the other kernel's works

    # no key on any process's command line
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        assert not any(k in line for k in keys), p

    # a restart reuses the launch environment: same key, still valid
    channels.close()
    assert status_with(base, TOKEN, "POST", f"api/kernels/{kernel_a}/restart") == 200
    channels, env_again = await kernel_env(base, kernel_a)
    assert env_again == env
    assert status_with(base, key, "GET", "bodhi/app/user") == 200

    # deleting the session (the kernel shuts down) revokes its key at once
    channels.close()
    assert status_with(base, TOKEN, "DELETE", f"api/sessions/{session_a}") == 204
    assert status_with(base, key, "GET", "bodhi/app/user") == 401
    assert status_with(base, key, "POST", "bodhi/v1/chat/completions",
                       json={"model": DEMO_MODEL_ID, "messages": []}) == 401

    # a server that stops revokes the keys of the kernels it still runs
    _session_c, kernel_c = start_session(base, TOKEN, "work/last.ipynb")
    last_channels, env_c = await kernel_env(base, kernel_c)
    keys.append(env_c["BODHI_API_KEY"])
    last_channels.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    db = tmp_path / "data" / "bodhi" / "bodhi.sqlite"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        left = conn.execute("SELECT name FROM api_tokens").fetchall()
        by_notebook = conn.execute(
            "SELECT notebook, count(*) FROM usage_records GROUP BY notebook").fetchall()
    assert left == []
    assert by_notebook == [("work/analysis.ipynb", 1)]

    # nothing wrote a key: not the DEBUG log, not the notebooks
    text = log.read_text(errors="replace")
    assert "Kernel argument 'env' passed with" in text  # the DEBUG line that names env keys
    for k in keys:
        assert k not in text
        for nb_path in (tmp_path / "work").glob("*.ipynb"):
            assert k not in nb_path.read_text()
