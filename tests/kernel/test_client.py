"""bodhi_jupyter.client() / async_client(): where they look, and the errors that say what
to pass instead of a connection trace."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys

import openai
import pytest

import bodhi_jupyter
kernel_client = importlib.import_module("bodhi_jupyter.kernel.client")  # the module, not
# the function bodhi_jupyter.kernel re-exports under the same name

from ..conftest import DEMO_MODEL_ID, _closed_port


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """Outside any kernel: no bodhi or hub variables, no running Jupyter server."""
    for name in ("BODHI_BASE_URL", "BODHI_API_KEY", "JUPYTERHUB_SERVICE_URL",
                 "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setattr(kernel_client, "_probed", set())


def says_what_to_pass(err: Exception) -> None:
    text = str(err)
    for needle in ("base_url=", "api_key=", "BODHI_BASE_URL", "BODHI_API_KEY"):
        assert needle in text, text
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.mark.parametrize("make", [bodhi_jupyter.client, bodhi_jupyter.async_client])
def test_outside_a_kernel_with_nothing_configured(nowhere, make):
    with pytest.raises(bodhi_jupyter.ServerNotFound) as e:
        make()
    assert "no Jupyter server is running" in str(e.value)
    says_what_to_pass(e.value)
    assert isinstance(e.value, RuntimeError)


@pytest.mark.parametrize("make", [bodhi_jupyter.client, bodhi_jupyter.async_client])
def test_unreachable_server(nowhere, make):
    url = f"http://127.0.0.1:{_closed_port()}/bodhi/v1"
    with pytest.raises(bodhi_jupyter.ServerNotFound) as e:
        make(base_url=url, api_key="bodhi_whatever")
    assert f"could not reach a bodhi server at {url}" in str(e.value)
    says_what_to_pass(e.value)


async def test_explicit_arguments_win_and_the_key_is_checked(nowhere, monkeypatch, api_url,
                                                            jupyter_token):
    # the environment points somewhere dead; the arguments win
    monkeypatch.setenv("BODHI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/bodhi/v1")
    monkeypatch.setenv("BODHI_API_KEY", "bodhi_from_env")
    llm = await asyncio.to_thread(bodhi_jupyter.client, base_url=api_url,
                                  api_key=jupyter_token, max_retries=0)
    assert isinstance(llm, openai.OpenAI)
    assert str(llm.base_url).rstrip("/") == api_url and llm.api_key == jupyter_token
    allm = await asyncio.to_thread(bodhi_jupyter.async_client, base_url=api_url,
                                   api_key=jupyter_token)
    assert isinstance(allm, openai.AsyncOpenAI)
    assert DEMO_MODEL_ID in [m.id for m in (await allm.models.list()).data]

    with pytest.raises(bodhi_jupyter.ServerNotFound) as e:
        await asyncio.to_thread(bodhi_jupyter.client, base_url=api_url, api_key="bodhi_nope")
    assert "refused the API key (401)" in str(e.value)
    says_what_to_pass(e.value)


async def test_environment_is_used_without_arguments(nowhere, monkeypatch, api_url,
                                                     jupyter_token):
    monkeypatch.setenv("BODHI_BASE_URL", api_url + "/")
    monkeypatch.setenv("BODHI_API_KEY", jupyter_token)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{_closed_port()}/user/x/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")  # bodhi's own variables first
    llm = await asyncio.to_thread(bodhi_jupyter.client)
    assert str(llm.base_url).rstrip("/") == api_url and llm.api_key == jupyter_token


def test_hub_variables_come_next(nowhere, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:9/user/ann/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    assert kernel_client.connection() == ("http://127.0.0.1:9/user/ann/bodhi/v1", "hub-token")


def test_the_package_stays_cheap_to_import():
    code = ("import sys, bodhi_jupyter; "
            "assert 'openai' not in sys.modules and 'httpx' not in sys.modules, 'eager'; "
            "assert 'bodhi_jupyter.kernel.client' not in sys.modules; "
            "assert bodhi_jupyter.ServerNotFound.__name__ == 'ServerNotFound'; "
            "assert callable(bodhi_jupyter.client) and callable(bodhi_jupyter.async_client)")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        bodhi_jupyter.no_such_thing  # noqa: B018
