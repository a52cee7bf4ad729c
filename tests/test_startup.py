"""Start-up stays cheap: the server starts without SQLAlchemy or Alembic, storage opens in
the background once it is up, and requests that need it wait for it."""

from __future__ import annotations

import asyncio
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
