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

from .conftest import until


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
