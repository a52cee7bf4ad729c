"""``POST bodhi/api/pull`` with the ollama client against the local hub stand-in: Ollama's
progress lines, then the model is listed; admin only."""

from __future__ import annotations

import httpx
import ollama
import pytest

from ..hf_hub_stand_in import HubStandIn, tiny_gguf

REPO, FILE = "someone/tiny-GGUF", "tiny-Q4_K_M.gguf"


@pytest.fixture
def hub():
    with HubStandIn() as h:
        yield h


@pytest.fixture
def bodhi_config(hub):
    return {"PullManager": {"endpoint": hub.url, "retry_wait": 0.01}}


async def test_pull_streams_progress_then_the_model_is_listed(hub, server_url, jupyter_token):
    hub.add(REPO, FILE, tiny_gguf(150_000))
    client = ollama.AsyncClient(host=f"{server_url}bodhi", timeout=60,
                                headers={"Authorization": f"Bearer {jupyter_token}"})
    lines = [p async for p in await client.pull(f"hf.co/{REPO}:{FILE}", stream=True)]
    assert lines[0].status == "pulling manifest" and lines[-1].status == "success"
    assert any(line.total == 150_000 for line in lines)
    assert (await client.pull(f"{REPO}:{FILE}")).status == "success"  # already there
    assert f"{REPO}:Q4_K_M" in {m.model for m in (await client.list()).models}

    with pytest.raises(ollama.ResponseError) as e:
        await client.pull(f"{REPO}:missing.gguf")
    assert e.value.status_code == 404


async def test_pull_needs_admin(server_url, jupyter_token):
    async with httpx.AsyncClient(timeout=30) as c:
        minted = await c.post(f"{server_url}bodhi/app/tokens", json={"name": "w",
                                                                     "scope": "write"},
                              headers={"Authorization": f"token {jupyter_token}"})
    writer = ollama.AsyncClient(host=f"{server_url}bodhi", timeout=30,
                                headers={"Authorization": f"Bearer {minted.json()['token']}"})
    with pytest.raises(ollama.ResponseError) as e:
        await writer.pull(f"{REPO}:{FILE}")
    assert e.value.status_code == 403


@pytest.mark.parametrize("name", ["hf.co/someone/--bad", "owner/na..me:Q4_K_M",
                                  "\u00bb\u58a7/\u00fc-\u00d1\u00aa\u00d7P\u009e"])
async def test_a_name_that_is_no_repository_id_is_a_400(hub, server_url, jupyter_token, name):
    """Checked before the hub is asked for the repository's files (the fuzz run found a 500
    from the hub client's own validation)."""
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{server_url}bodhi/api/pull", json={"model": name},
                         headers={"Authorization": f"token {jupyter_token}"})
    assert r.status_code == 400, r.text
    assert "repository" in r.json()["error"]
