"""Fixtures for tests that send their own credentials (or none): a client for the server's
root without any, and the headers of the server's owner. Imported where needed; they
shadow the shared, token-carrying ``http`` fixture there."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def http(server_url, jp_asyncio_loop):
    c = httpx.AsyncClient(base_url=server_url, timeout=30)
    yield c
    jp_asyncio_loop.run_until_complete(c.aclose())


@pytest.fixture
def login(jupyter_token) -> dict:
    """Headers of a Jupyter-authenticated caller (the server's owner: admin)."""
    return {"Authorization": f"token {jupyter_token}"}
