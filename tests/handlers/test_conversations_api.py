"""The panel's conversations over HTTP: lifecycle, per-person isolation (404), pagination,
search, branches, export, bad input, and survival across a server restart."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from bodhi_jupyter.store.tables import conversation_messages, conversations

from ..conftest import DEMO_MODEL_ID
from .test_errors import assert_error_shape


@pytest.fixture
def bob(bodhi_app, server_url, jp_asyncio_loop):
    """Another person: a bodhi token owned by 'bob' (role 'user', scope write)."""
    token, _ = bodhi_app.tokens.create("bob", "bob's", "write")
    c = httpx.AsyncClient(base_url=server_url + "bodhi/", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
    yield c
    jp_asyncio_loop.run_until_complete(c.aclose())


async def new_conversation(http, **body) -> dict:
    r = await http.post("app/conversations", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def add(http, conv_id, **body) -> dict:
    r = await http.post(f"app/conversations/{conv_id}/messages", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_lifecycle_with_a_branch_and_a_cut_off_reply(http):
    conv = await new_conversation(http, model=DEMO_MODEL_ID, params={"temperature": 0.2})
    assert conv["title"] == "New chat" and conv["messages"] == []
    q = await add(http, conv["id"], role="user", content="What is 2+2?")
    a1 = await add(http, conv["id"], role="assistant", content="4", parent_id=q["id"],
                   model=DEMO_MODEL_ID, stats={"prompt_tokens": 12, "completion_tokens": 1,
                                               "tokens_per_second": 80.5, "ttft_ms": 40})
    a2 = await add(http, conv["id"], role="assistant", content="Four, be", parent_id=q["id"],
                   status="streaming")
    r = await http.put(f"app/conversations/{conv['id']}/messages/{a2['id']}",
                       json={"content": "Four, because", "status": "cut_off"})
    assert r.status_code == 200 and r.json()["status"] == "cut_off"

    got = (await http.get(f"app/conversations/{conv['id']}")).json()
    assert got["title"] == "What is 2+2?"
    assert got["params"] == {"temperature": 0.2}
    by_id = {m["id"]: m for m in got["messages"]}
    assert by_id[a1["id"]]["parent_id"] == by_id[a2["id"]]["parent_id"] == q["id"]
    assert by_id[a1["id"]]["stats"]["tokens_per_second"] == 80.5
    assert by_id[a2["id"]]["content"] == "Four, because"

    r = await http.put(f"app/conversations/{conv['id']}", json={"title": "Sums"})
    assert r.json()["title"] == "Sums"
    r = await http.get(f"app/conversations/{conv['id']}/export")
    assert r.headers["content-type"].startswith("text/markdown")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.startswith("# Sums") and "Four, because" in r.text and "cut off" in r.text
    r = await http.get(f"app/conversations/{conv['id']}/export?format=json")
    assert r.headers["content-type"].startswith("application/json")
    assert len(json.loads(r.text)["messages"]) == 3

    assert (await http.delete(f"app/conversations/{conv['id']}")).status_code == 204
    r = await http.get(f"app/conversations/{conv['id']}")
    assert_error_shape(r, 404, "conversation_not_found")


async def test_other_people_get_404_and_see_nothing(http, bob):
    conv = await new_conversation(http, title="mine")
    await add(http, conv["id"], role="user", content="private words")
    cid = conv["id"]
    for method, path, body in [
            ("GET", f"app/conversations/{cid}", None),
            ("PUT", f"app/conversations/{cid}", {"title": "stolen"}),
            ("DELETE", f"app/conversations/{cid}", None),
            ("GET", f"app/conversations/{cid}/export", None),
            ("POST", f"app/conversations/{cid}/messages", {"role": "user", "content": "x"})]:
        r = await bob.request(method, path, json=body)
        assert_error_shape(r, 404, "conversation_not_found")
    listing = (await bob.get("app/conversations?q=private")).json()
    assert listing["total"] == 0 and listing["data"] == []
    got = (await http.get(f"app/conversations/{cid}")).json()
    assert got["title"] == "mine" and len(got["messages"]) == 1


async def test_list_is_newest_first_paginated_and_searchable(http):
    ids = [(await new_conversation(http, title=f"topic {i}"))["id"] for i in range(3)]
    await add(http, ids[0], role="user", content="Tell me about GROUPBY in pandas")
    page1 = (await http.get("app/conversations?page_size=2")).json()
    assert page1["total"] == 3 and page1["page_size"] == 2
    assert [c["id"] for c in page1["data"]] == [ids[0], ids[2]]
    page2 = (await http.get("app/conversations?page_size=2&page=2")).json()
    assert [c["id"] for c in page2["data"]] == [ids[1]]
    found = (await http.get("app/conversations", params={"q": "groupby"})).json()
    assert [c["id"] for c in found["data"]] == [ids[0]]
    assert found["data"][0]["message_count"] == 1


@pytest.mark.parametrize("method, path, body, code, param", [
    ("POST", "app/conversations", b"{nope", "invalid_json", None),
    ("POST", "app/conversations", {"titel": "x"}, "unknown_field", "titel"),
    ("POST", "app/conversations", {"title": "  "}, "invalid_value", "title"),
    ("POST", "app/conversations", {"params": {"temperature": 9}}, "invalid_value",
     "params.temperature"),
    ("PUT", "app/conversations/{id}", {}, "missing_required_field", None),
    ("POST", "app/conversations/{id}/messages", {"content": "x"}, "missing_required_field",
     "role"),
    ("POST", "app/conversations/{id}/messages", {"role": "wizard"}, "invalid_value", "role"),
    ("POST", "app/conversations/{id}/messages", {"role": "user", "parent_id": "nope"},
     "invalid_value", "parent_id"),
    ("POST", "app/conversations/{id}/messages", {"role": "user", "status": "done"},
     "invalid_value", "status"),
    ("POST", "app/conversations/{id}/messages", {"role": "user", "stats": {"ttft_ms": -1}},
     "invalid_value", "stats.ttft_ms"),
    ("GET", "app/conversations/{id}/export?format=pdf", None, "invalid_value", "format"),
    ("GET", "app/conversations?page_size=0", None, "invalid_value", "page_size"),
])
async def test_bad_input_is_a_clear_400_that_changes_nothing(http, bodhi_app, method, path,
                                                             body, code, param):
    conv = await new_conversation(http, title="keep")
    with bodhi_app.database.read() as conn:
        before = (conn.scalar(select(func.count()).select_from(conversations)),
                  conn.scalar(select(func.count()).select_from(conversation_messages)))
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = await http.request(method, path.format(id=conv["id"]), **kwargs)
    assert_error_shape(r, 400, code, param)
    with bodhi_app.database.read() as conn:
        after = (conn.scalar(select(func.count()).select_from(conversations)),
                 conn.scalar(select(func.count()).select_from(conversation_messages)))
    assert after == before
    assert (await http.get(f"app/conversations/{conv['id']}")).json()["title"] == "keep"


async def test_models_list_names_the_source_and_request_defaults(http):
    r = await http.get("app/models")
    assert r.status_code == 200
    demo = next(m for m in r.json()["data"] if m["id"] == DEMO_MODEL_ID)
    assert demo["source"] == "package"
    assert demo["request_defaults"]["system_prompt"] == "You are a helpful assistant."


async def test_models_list_offers_a_model_file_added_since_the_last_listing(
        http, bodhi_app, tmp_path, smollm2_path):
    models = tmp_path / "more-models"
    models.mkdir()
    bodhi_app.registry.discovery.model_dirs = [str(models)]
    bodhi_app.registry.rescan_interval = 0
    before = {m["id"] for m in (await http.get("app/models")).json()["data"]}
    (models / "late-arrival.gguf").symlink_to(smollm2_path)
    after = {m["id"] for m in (await http.get("app/models")).json()["data"]}
    assert "late-arrival" not in before and after - before == {"late-arrival"}
