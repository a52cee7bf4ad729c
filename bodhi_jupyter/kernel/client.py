"""Find the bodhi API of the Jupyter server a kernel runs under, and its credentials.

Order: explicit ``base_url``/``api_key`` arguments; ``BODHI_BASE_URL``/``BODHI_API_KEY``
(the server hands each kernel it starts its own token this way); JupyterHub's single-user
variables; the running server that started this kernel (Jupyter's runtime files name each
server's pid, URL and token); the only running server. The token never leaves the machine.

``client()`` asks the server once whether it answers and takes the key, so that a wrong
setup fails with a sentence saying what to pass instead of a connection trace later.
"""

from __future__ import annotations

import os

_HOW = ("pass base_url= and api_key= (e.g. bodhi_jupyter.client(base_url="
        "'http://127.0.0.1:8888/bodhi/v1', api_key='<a bodhi or Jupyter token>')), or set "
        "BODHI_BASE_URL and BODHI_API_KEY")
PROBE_TIMEOUT_S = 5.0
_probed: set[tuple[str, str]] = set()  # (url, key) pairs that answered


class ServerNotFound(RuntimeError):
    """No bodhi server to talk to, or it refused the key; the message says what to pass."""


def _running_servers() -> list[dict]:
    from jupyter_server.serverapp import list_running_servers

    return list(list_running_servers())


def connection(base_url: str | None = None, api_key: str | None = None) -> tuple[str, str]:
    """(base URL of the OpenAI-compatible API, API key)."""
    url = base_url or os.environ.get("BODHI_BASE_URL")
    key = api_key or os.environ.get("BODHI_API_KEY")
    if url and key:
        return url.rstrip("/"), key
    hub_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    hub_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url and hub_url and hub_token:
        return hub_url.rstrip("/") + "/bodhi/v1", key or hub_token
    servers = _running_servers()
    mine = [s for s in servers if s.get("pid") == os.getppid()]
    candidates = mine or servers
    if url:  # a URL without a key: the key of the running server with that URL, if any
        candidates = [s for s in candidates if url.startswith(s["url"].rstrip("/"))]
    if len(candidates) != 1:
        where = ("this code does not run in a kernel started by a Jupyter server, and no "
                 "Jupyter server is running" if not servers else
                 f"found {len(servers)} running Jupyter servers and none started this kernel")
        raise ServerNotFound(f"bodhi_jupyter does not know which server to use: {where}; "
                             + _HOW)
    info = candidates[0]
    if not (key or info.get("token")):
        raise ServerNotFound(f"the Jupyter server at {info['url']} uses no token; " + _HOW)
    return url.rstrip("/") if url else info["url"].rstrip("/") + "/bodhi/v1", key or info["token"]


def probe(url: str, key: str) -> None:
    """One cheap authenticated GET (``/models``); ServerNotFound naming what to pass when
    the server cannot be reached or refuses the key."""
    if (url, key) in _probed:
        return
    import httpx

    try:
        r = httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"},
                      timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as e:
        raise ServerNotFound(f"could not reach a bodhi server at {url} "
                             f"({type(e).__name__}: {e}); " + _HOW) from None
    if r.status_code in (401, 403):
        raise ServerNotFound(
            f"the server at {url} refused the API key ({r.status_code}): a kernel's own key "
            "stops working when its kernel is shut down (restart the kernel for a new one), "
            "or the key is not one this server accepts; " + _HOW) from None
    if r.status_code >= 400:
        raise ServerNotFound(f"{url}/models answered {r.status_code}: not a bodhi (or "
                             f"OpenAI-compatible) API; " + _HOW) from None
    _probed.add((url, key))


def client(*, base_url: str | None = None, api_key: str | None = None, **kwargs):
    """A synchronous ``openai.OpenAI`` client for this server; other keyword arguments go
    to ``openai.OpenAI``."""
    import openai

    url, key = connection(base_url, api_key)
    probe(url, key)
    return openai.OpenAI(base_url=url, api_key=key, **kwargs)


def async_client(*, base_url: str | None = None, api_key: str | None = None, **kwargs):
    """An ``openai.AsyncOpenAI`` client for this server (the check is one short blocking
    request, made when the client is created)."""
    import openai

    url, key = connection(base_url, api_key)
    probe(url, key)
    return openai.AsyncOpenAI(base_url=url, api_key=key, **kwargs)
