"""ConversationStore without HTTP: isolation, ordering, search, the message tree, titles,
cut-off replies and export."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bodhi_jupyter.conversations import (
    ConversationStore,
    auto_title,
    check_params,
    current_thread,
    export_json,
    export_markdown,
)
from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.store.tables import conversation_messages as messages


@pytest.fixture
def store(database):
    return ConversationStore(database)


def test_someone_elses_conversation_does_not_exist(store):
    conv = store.create("alice")
    store.add_message("alice", conv.id, "user", "secret plans")
    for call in (lambda: store.get("bob", conv.id),
                 lambda: store.update("bob", conv.id, title="mine now"),
                 lambda: store.delete("bob", conv.id),
                 lambda: store.add_message("bob", conv.id, "user", "hi")):
        with pytest.raises(BodhiAPIError) as e:
            call()
        assert e.value.status == 404 and e.value.code == "conversation_not_found"
    assert store.list("bob") == ([], 0)
    assert store.list("bob", "secret") == ([], 0)
    assert store.get("alice", conv.id).messages[0].content == "secret plans"


def test_list_is_newest_activity_first_and_paginated(store):
    ids = [store.create("alice", title=f"c{i}").id for i in range(5)]
    store.add_message("alice", ids[1], "user", "bump")  # activity moves it to the top
    items, total = store.list("alice", offset=0, limit=2)
    assert total == 5
    assert [c.id for c in items] == [ids[1], ids[4]]
    assert items[0].message_count == 1 and items[1].message_count == 0
    items, _ = store.list("alice", offset=4, limit=2)
    assert [c.id for c in items] == [ids[0]]


def test_search_matches_titles_and_message_text_ignoring_case(store):
    a = store.create("alice", title="Pandas groupby")
    b = store.create("alice")
    store.add_message("alice", b.id, "user", "How do I plot a HISTOGRAM?")
    store.create("alice", title="unrelated")
    assert [c.id for c in store.list("alice", "GROUPBY")[0]] == [a.id]
    assert [c.id for c in store.list("alice", "histogram")[0]] == [b.id]
    # LIKE wildcards are literal text here
    assert store.list("alice", "%")[1] == 0
    assert store.list("alice", "_")[1] == 0


def test_title_comes_from_the_first_question_until_renamed(store):
    conv = store.create("alice")
    assert conv.title == "New chat"
    q = store.add_message("alice", conv.id, "user", "## What is the **capital** of France?\nmore")
    store.add_message("alice", conv.id, "assistant", "Paris.", parent_id=q.id)
    store.add_message("alice", conv.id, "user", "And of Spain?")
    assert store.get("alice", conv.id).title == "What is the capital of France?"
    store.update("alice", conv.id, title="Capitals")
    store.add_message("alice", conv.id, "user", "ignored for the title")
    assert store.get("alice", conv.id).title == "Capitals"


def test_auto_title_is_cut_at_a_word_boundary():
    title = auto_title("word " * 40)
    assert title.endswith("…") and len(title) <= 61 and "wor…" not in title
    assert auto_title("```python\nprint(1)\n```") == "print(1)"
    assert auto_title("   ") == "New chat"


def test_branches_keep_every_answer_and_the_thread_follows_the_newest(store):
    conv = store.create("alice")
    q = store.add_message("alice", conv.id, "user", "Q")
    a1 = store.add_message("alice", conv.id, "assistant", "first answer", parent_id=q.id)
    a2 = store.add_message("alice", conv.id, "assistant", "regenerated", parent_id=q.id)
    full = store.get("alice", conv.id)
    assert {m.id for m in full.messages} == {q.id, a1.id, a2.id}
    assert [m.id for m in current_thread(full.messages)] == [q.id, a2.id]
    assert [m.id for m in current_thread(full.messages, leaf=a1.id)] == [q.id, a1.id]
    other = store.create("alice")
    with pytest.raises(BodhiAPIError) as e:  # a parent from another conversation
        store.add_message("alice", other.id, "assistant", "x", parent_id=q.id)
    assert e.value.status == 400 and e.value.param == "parent_id"


def test_a_streaming_reply_is_kept_and_marked_cut_off(store, database):
    conv = store.create("alice")
    q = store.add_message("alice", conv.id, "user", "Tell me a story")
    reply = store.add_message("alice", conv.id, "assistant", "", parent_id=q.id,
                              status="streaming")
    store.update_message("alice", conv.id, reply.id, content="Once upon")
    assert store.get("alice", conv.id).messages[1].status == "streaming"
    # the tab went away: no update for a while
    with database.begin() as conn:
        conn.execute(messages.update().where(messages.c.id == reply.id).values(
            updated_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
    m = store.get("alice", conv.id).messages[1]
    assert (m.status, m.content) == ("cut_off", "Once upon")


def test_server_start_cuts_off_only_its_owners_streaming_replies(store):
    mine, theirs = store.create("alice"), store.create("bob")
    a = store.add_message("alice", mine.id, "assistant", "half", status="streaming")
    b = store.add_message("bob", theirs.id, "assistant", "half", status="streaming")
    assert store.cut_off_streaming("alice") == 1
    assert store.get("alice", mine.id).messages[0].status == "cut_off"
    assert store.get("bob", theirs.id).messages[0].status == "streaming"
    assert a.id != b.id


def test_delete_removes_messages_too(store, database):
    conv = store.create("alice")
    store.add_message("alice", conv.id, "user", "hi")
    store.delete("alice", conv.id)
    with database.read() as conn:
        assert conn.execute(messages.select()).all() == []
    with pytest.raises(BodhiAPIError):
        store.get("alice", conv.id)


def test_export_markdown_follows_the_thread_and_marks_cut_offs(store):
    conv = store.create("alice", title="Story time", model="m1")
    q = store.add_message("alice", conv.id, "user", "Tell me a story")
    old = store.add_message("alice", conv.id, "assistant", "OLD", parent_id=q.id)
    store.add_message("alice", conv.id, "assistant", "Once upon", parent_id=q.id, model="m1",
                      status="cut_off")
    full = store.get("alice", conv.id)
    md = export_markdown(full)
    assert md.startswith("# Story time\n")
    assert "## You\n\nTell me a story" in md and "## Assistant (m1)\n\nOnce upon" in md
    assert "*(cut off" in md and "OLD" not in md
    assert "OLD" in export_markdown(full, leaf=old.id)
    data = json.loads(export_json(full))
    assert data["format"] == "bodhi-conversation" and len(data["messages"]) == 3


@pytest.mark.parametrize("params, param", [
    ({"temperature": 3}, "params.temperature"),
    ({"top_p": -0.1}, "params.top_p"),
    ({"max_tokens": 1.5}, "params.max_tokens"),
    ({"seed": True}, "params.seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "params.stop"),
    ({"temprature": 1}, "params.temprature"),
])
def test_bad_params_name_the_field(params, param):
    with pytest.raises(BodhiAPIError) as e:
        check_params(params)
    assert e.value.status == 400 and e.value.param == param


def test_params_left_unset_are_dropped():
    assert check_params({"temperature": None, "stop": "\n\n", "seed": 7}) == {
        "stop": ["\n\n"], "seed": 7}
