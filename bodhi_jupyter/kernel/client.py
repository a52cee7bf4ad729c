"""Find the bodhi API of the Jupyter server a kernel runs under, and its credentials.

Order: explicit ``BODHI_BASE_URL``/``BODHI_API_KEY``; JupyterHub's single-user variables;
the running server that started this kernel (Jupyter's runtime files name each server's
pid, URL and token); the only running server. The token never leaves the user's machine.
"""

from __future__ import annotations

import os


class ServerNotFound(RuntimeError):
    pass


def _running_servers() -> list[dict]:
    from jupyter_server.serverapp import list_running_servers

    return list(list_running_servers())


def connection() -> tuple[str, str]:
    """(base URL of the OpenAI-compatible API, API key)."""
    url, key = os.environ.get("BODHI_BASE_URL"), os.environ.get("BODHI_API_KEY")
    if url and key:
        return url.rstrip("/"), key
    hub_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    hub_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if hub_url and hub_token:
        return hub_url.rstrip("/") + "/bodhi/v1", hub_token
    servers = _running_servers()
    mine = [s for s in servers if s.get("pid") == os.getppid()]
    candidates = mine or servers
    if len(candidates) != 1:
        raise ServerNotFound(
            f"found {len(servers)} running Jupyter servers and none started this kernel; "
            "set BODHI_BASE_URL and BODHI_API_KEY")
    info = candidates[0]
    if not info.get("token"):
        raise ServerNotFound(f"the Jupyter server at {info['url']} uses no token; set "
                             "BODHI_API_KEY to a token it accepts")
    return info["url"].rstrip("/") + "/bodhi/v1", info["token"]


def client(**kwargs):
    """A synchronous ``openai.OpenAI`` client for this server."""
    import openai

    url, key = connection()
    return openai.OpenAI(base_url=url, api_key=key, **kwargs)


def async_client(**kwargs):
    """An ``openai.AsyncOpenAI`` client for this server."""
    import openai

    url, key = connection()
    return openai.AsyncOpenAI(base_url=url, api_key=key, **kwargs)
