"""Start-up stays cheap: the server starts without SQLAlchemy or Alembic, storage opens in
the background once it is up, and requests that need it wait for it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from bodhi_jupyter.app import BodhiApp

from .conftest import DEMO_MODEL_ID, until
from .live_server import call, jupyter  # noqa: F401  (jupyter is a fixture)


def test_importing_the_extension_loads_no_database_library():
    code = ("import sys, bodhi_jupyter.app; "
            "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_extension_compiles_no_request_schema():
    code = ("import bodhi_jupyter.app, bodhi_jupyter.schemas as s; "
            "print(s._validator.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"  # each is compiled when its endpoint is first used


@pytest.mark.parametrize("args, frozen", [((), True), (("--BodhiApp.freeze_gc=False",), False)])
def test_linking_the_extension_freezes_what_start_up_allocated(tmp_path, args, frozen):
    """Without gc.freeze a full collection during start-up walks all of it again (the
    extension's own allocations bring one more on)."""
    code = ("import gc, sys; from jupyter_server.serverapp import ServerApp; "
            "app = ServerApp(); app.initialize(argv=['--port=0', '--no-browser', "
            "'--ServerApp.jpserver_extensions={\"bodhi_jupyter\": True}', *sys.argv[1:]]); "
            "print(gc.get_freeze_count())")
    env = {**os.environ, **{f"JUPYTER_{d.upper()}_DIR": str(tmp_path / d)
                            for d in ("data", "runtime", "config")}}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True, env=env, cwd=tmp_path, timeout=120)
    count = int(out.stdout.strip().splitlines()[-1])
    assert (count > 10_000) if frozen else count == 0, out.stdout


@pytest.fixture
def gate(monkeypatch):
    """Holds the background storage open until the test releases it."""
    release = threading.Event()
    entered = threading.Event()
    original = BodhiApp._open_storage

    def gated(self):
        entered.set()
        release.wait(30)
        original(self)

    monkeypatch.setattr(BodhiApp, "_open_storage", gated)
    yield entered, release
    release.set()


async def test_a_request_waits_for_storage_then_succeeds(jp_serverapp, http, gate):
    entered, release = gate
    request = asyncio.ensure_future(http.get("app/info"))
    await until(entered.is_set)
    await asyncio.sleep(0.2)  # a request that did not wait would have answered by now
    assert not request.done()
    release.set()
    resp = await request
    assert resp.status_code == 200, resp.text


async def test_storage_that_cannot_open_gives_503(jp_serverapp, http, monkeypatch):
    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(BodhiApp, "_open_storage", broken)
    resp = await http.get("v1/models")
    assert resp.status_code == 503
    err = resp.json()["error"]
    assert err["code"] == "storage_unavailable" and "disk on fire" in err["message"]


def test_the_stores_use_sqlalchemy_core_without_the_orm(jupyter, fake_engine, monkeypatch):
    """Every store, used through the API, loads SQLAlchemy's Core and never
    ``sqlalchemy.orm``, whose memory the server does without (store/tables.py). Python's
    import log, in the server's log, lists each module as it is first imported."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    _proc, base, log, _env = jupyter(
        "server", f"--LlamaServerLauncher.llama_server_path={fake_engine}")
    app = base + "bodhi/app/"
    assert call(app + "tokens", {"name": "nb", "scope": "read"})[0] == 201
    assert call(app + "tokens")[0] == 200
    assert call(app + "aliases", {"name": "mine", "model": DEMO_MODEL_ID})[0] == 201
    conv = call(app + "conversations", {"title": "t"})[1]
    assert call(app + f"conversations/{conv['id']}/messages",
                {"role": "user", "content": "hi"})[0] == 201
    chat = {"model": "mine", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert call(base + "bodhi/v1/chat/completions", chat)[0] == 200
    for path in ("conversations", "models/pulls", "upstreams", "settings", "audit",
                 "usage?group_by=token,day,group"):
        assert call(app + path)[0] == 200, path
    imported = {line.rsplit("|", 1)[-1].strip() for line in
                log.read_text(errors="replace").splitlines() if line.startswith("import time:")}
    assert {"sqlalchemy.engine", "bodhi_jupyter.store.tables"} <= imported
    assert not {m for m in imported if m.startswith("sqlalchemy.orm")}
