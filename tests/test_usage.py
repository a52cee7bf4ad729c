"""Usage records without HTTP: token counts from engine replies, the batched writer, and the
aggregation, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.store.database import Database
from bodhi_jupyter.store.tables import usage_records
from bodhi_jupyter.usage import (
    UsageEntry,
    UsageQuery,
    UsageRecorder,
    counts_from_anthropic_stream,
    counts_from_body,
    counts_from_stream_tail,
    parse_group_by,
    parse_time,
)

from .conftest import DEMO_MODEL_ID, until
from .live_server import call, jupyter, wait_until  # noqa: F401  (jupyter is a fixture)


def event(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


# -- token counts ----------------------------------------------------------------------------
def test_counts_from_a_non_streaming_body():
    body = json.dumps({"choices": [{"message": {"content": 'say "usage": {"prompt_tokens": 1}'}}],
                       "usage": {"prompt_tokens": 31, "completion_tokens": 5,
                                 "prompt_tokens_details": {"cached_tokens": 30}},
                       "timings": {"cache_n": 30, "prompt_n": 1, "predicted_n": 5}}).encode()
    assert counts_from_body(body) == (31, 5)


def test_counts_from_an_embeddings_body_and_from_nothing():
    body = json.dumps({"data": [{"embedding": [0.1] * 1000}],
                       "usage": {"prompt_tokens": 7, "total_tokens": 7}}).encode()
    assert counts_from_body(body) == (7, 0)
    assert counts_from_body(b'{"choices": []}') == (0, 0)
    assert counts_from_body(b"not json") == (0, 0)


def test_stream_tail_prefers_usage_then_llama_server_timings():
    chunk = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "x"}}]}
    timings = {**chunk, "timings": {"cache_n": 30, "prompt_n": 1, "predicted_n": 5,
                                    "predicted_ms": 3.5}}
    usage = {**chunk, "choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 5},
             "timings": {"cache_n": 0, "prompt_n": 1, "predicted_n": 5}}
    done = b"data: [DONE]\n\n"
    # llama-server without include_usage: only timings on the final chunk
    assert counts_from_stream_tail([event(chunk), event(timings), done]) == (31, 5)
    # with include_usage: the usage event wins
    assert counts_from_stream_tail([event(timings), event(usage) + done]) == (31, 5)
    # the first piece kept may start mid-event
    assert counts_from_stream_tail([event(chunk)[20:], event(usage), done]) == (31, 5)
    assert counts_from_stream_tail([event(chunk), done]) == (0, 0)


def typed(kind: str, obj: dict) -> bytes:
    """An event as llama-server writes them on the Responses and Messages routes."""
    return f"event: {kind}\n".encode() + event({"type": kind, **obj})


# bodies and events as the real engine sent them (SmolLM2, bodhi-llama-server)
def test_counts_from_responses_and_messages_bodies():
    responses = {"object": "response", "output": [], "usage": {
        "input_tokens": 17, "output_tokens": 4, "total_tokens": 21,
        "input_tokens_details": {"cached_tokens": 16}}}
    assert counts_from_body(json.dumps(responses).encode()) == (17, 4)  # cached included
    message = {"type": "message", "content": [], "usage": {
        "cache_read_input_tokens": 31, "input_tokens": 1, "output_tokens": 8}}
    assert counts_from_body(json.dumps(message).encode()) == (32, 8)  # cached apart
    assert counts_from_body(b'{"input_tokens": 32}') == (0, 0)  # count_tokens infers nothing


def test_responses_stream_counts_come_from_response_completed():
    delta = typed("response.output_text.delta", {"item_id": "m", "delta": " you"})
    done = typed("response.completed", {"response": {
        "object": "response", "output": [], "usage": {
            "input_tokens": 32, "output_tokens": 4, "total_tokens": 36}},
        "timings": {"cache_n": 0, "prompt_n": 32, "predicted_n": 4}})
    assert counts_from_stream_tail([delta, typed("response.output_item.done", {}), done]) == (
        32, 4)


def test_anthropic_stream_counts_come_from_both_ends():
    start = typed("message_start", {"message": {"type": "message", "content": [], "usage": {
        "cache_read_input_tokens": 31, "input_tokens": 1, "output_tokens": 0}}})
    head = [start + typed("content_block_start", {"index": 0})]
    tail = [typed("content_block_stop", {"index": 0}),
            typed("message_delta", {"delta": {"stop_reason": "max_tokens"},
                                    "usage": {"output_tokens": 4}}),
            typed("message_stop", {})]
    assert counts_from_anthropic_stream(head, tail) == (32, 4)
    assert counts_from_anthropic_stream([], tail) == (0, 4)


# -- the writer ------------------------------------------------------------------------------
@pytest.fixture
def database(db_url):
    db = Database(url=db_url)
    db.upgrade()
    yield db
    db.dispose()


def entry(**kw) -> UsageEntry:
    base = dict(user="ann", token_id=None, model="m1", endpoint="chat", stream=False,
                status=200, duration_ms=10.0, prompt_tokens=3, completion_tokens=4)
    return UsageEntry(**{**base, **kw})


async def test_aggregation_by_notebook(database):
    recorder = UsageRecorder(database)
    recorder.record(entry(notebook="work/a.ipynb", completion_tokens=5))
    recorder.record(entry(notebook="work/a.ipynb", model="m2"))
    recorder.record(entry(notebook="b.ipynb", user="bob"))
    recorder.record(entry())  # not from a kernel's credential
    await recorder.flush()
    recorder.close()
    q = UsageQuery(database)
    rows, total = q.aggregate(["notebook"], users=["ann"])
    assert total == 2
    assert [(r["notebook"], r["requests"], r["completion_tokens"]) for r in rows] == [
        (None, 1, 4), ("work/a.ipynb", 2, 9)]
    rows, _ = q.aggregate(["user", "notebook"])
    assert [(r["user"], r["notebook"]) for r in rows] == [
        ("ann", None), ("ann", "work/a.ipynb"), ("bob", "b.ipynb")]
    assert parse_group_by("notebook,model") == ["notebook", "model"]


async def test_aggregation_by_hub_group_counts_a_request_in_each_group(database):
    recorder = UsageRecorder(database)
    recorder.record(entry(user="ann", groups=("staff", "ml")))
    recorder.record(entry(user="bob", groups=("staff",), completion_tokens=6))
    recorder.record(entry(user="cid"))  # in no group
    recorder.record(entry(user="ann", groups=("ml", "ml")))  # a repeated group counts once
    await recorder.flush()
    recorder.close()
    q = UsageQuery(database)
    rows, total = q.aggregate(["group"])
    assert total == 3
    assert [(r["group"], r["requests"], r["completion_tokens"]) for r in rows] == [
        (None, 1, 4), ("ml", 2, 8), ("staff", 2, 10)]
    rows, _ = q.aggregate(["group", "user"], users=["ann"])
    assert [(r["group"], r["user"], r["requests"]) for r in rows] == [
        ("ml", "ann", 2), ("staff", "ann", 1)]
    # without group_by=group nothing is counted twice
    rows, _ = q.aggregate(["user"])
    assert [(r["user"], r["requests"]) for r in rows] == [("ann", 2), ("bob", 1), ("cid", 1)]
    assert parse_group_by("group,day") == ["group", "day"]


def count_rows(db: Database) -> int:
    with db.read() as conn:
        return conn.scalar(select(func.count()).select_from(usage_records))


async def test_recorder_commits_promptly_and_batches_what_queued_meanwhile(database):
    writers = []
    writing, release = threading.Event(), threading.Event()
    original = UsageRecorder._write

    def spy(self, batch):
        writers.append((threading.current_thread().name, len(batch)))
        if len(writers) == 1:
            writing.set()
            release.wait(10)  # hold the first write while more requests finish
        original(self, batch)

    recorder = UsageRecorder(database)
    UsageRecorder._write = spy
    try:
        recorder.record(entry(prompt_tokens=0))
        assert writing.wait(10)  # written after a short linger, not a long batching delay
        for i in range(1, 50):
            recorder.record(entry(prompt_tokens=i))
        release.set()
        await recorder.flush()
    finally:
        UsageRecorder._write = original
    assert count_rows(database) == 50
    assert {name for name, _ in writers} == {"bodhi-usage-writer"}
    assert [n for _, n in writers] == [1, 49]  # what queued during a write goes together
    recorder.record(entry())
    recorder.close()  # writes what is queued
    assert count_rows(database) == 51
    recorder.record(entry())  # after close: dropped, not queued forever
    assert count_rows(database) == 51


async def test_a_record_is_durable_within_tens_of_milliseconds(database):
    recorder = UsageRecorder(database)
    try:
        recorder.record(entry())
        await until(lambda: count_rows(database) == 1, timeout=0.2, interval=0.005)
    finally:
        recorder.close()


# -- aggregation -----------------------------------------------------------------------------
async def test_aggregation_by_model_user_day_and_token(database):
    day1 = datetime(2025, 3, 1, 23, 30, tzinfo=timezone.utc)
    day2 = datetime(2025, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 1 Mar 22:30 UTC
    day3 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
    recorder = UsageRecorder(database)
    recorder.record(entry(at=day1))
    recorder.record(entry(at=day2, token_id="t1", duration_ms=30.0))
    recorder.record(entry(at=day3, model="m2", status=502, prompt_tokens=0,
                          completion_tokens=0))
    recorder.record(entry(at=day3, user="bob", prompt_tokens=10, completion_tokens=1))
    await recorder.flush()
    recorder.close()
    q = UsageQuery(database)

    rows, total = q.aggregate(["model"], users=["ann"])
    assert total == 2
    assert rows == [
        {"model": "m1", "requests": 2, "prompt_tokens": 6, "completion_tokens": 8,
         "errors": 0, "avg_duration_ms": 20.0},
        {"model": "m2", "requests": 1, "prompt_tokens": 0, "completion_tokens": 0,
         "errors": 1, "avg_duration_ms": 10.0},
    ]

    rows, total = q.aggregate(["day", "user"])  # everyone; days in UTC
    assert [(r["day"], r["user"], r["requests"]) for r in rows] == [
        ("2025-03-01", "ann", 2), ("2025-03-03", "ann", 1), ("2025-03-03", "bob", 1)]

    rows, _ = q.aggregate(["token"], users=["ann"])
    assert [(r["token_id"], r["requests"]) for r in rows] == [(None, 2), ("t1", 1)]

    # since inclusive, until exclusive, compared in UTC
    rows, total = q.aggregate(["user"], since=datetime(2025, 3, 1, 23, 0, tzinfo=timezone.utc),
                              until=day3)
    assert total == 1 and rows[0]["requests"] == 1
    rows, total = q.aggregate(["model", "user"], offset=1, limit=1)
    assert total == 3 and rows == [{"model": "m1", "user": "bob", "requests": 1,
                                    "prompt_tokens": 10, "completion_tokens": 1, "errors": 0,
                                    "avg_duration_ms": 10.0}]


def test_query_parameters_are_checked():
    assert parse_group_by(None) == ["model"]
    assert parse_group_by("day,model,day") == ["day", "model"]
    with pytest.raises(BodhiAPIError) as e:
        parse_group_by("model,colour")
    assert e.value.status == 400 and e.value.param == "group_by"
    assert parse_time("2025-03-01", "since") == datetime(2025, 3, 1, tzinfo=timezone.utc)
    assert parse_time("2025-03-01T02:00:00+02:00", "since") == datetime(
        2025, 3, 1, tzinfo=timezone.utc)
    assert parse_time("2025-03-01T02:00:00 02:00", "since") == datetime(  # '+' unescaped
        2025, 3, 1, tzinfo=timezone.utc)
    assert parse_time("2025-03-01T00:00:00Z", "until") == datetime(2025, 3, 1,
                                                                   tzinfo=timezone.utc)
    with pytest.raises(BodhiAPIError) as e:
        parse_time("yesterday", "until")
    assert e.value.param == "until"


# -- durability in a real server ------------------------------------------------------------
def test_usage_of_finished_requests_survives_a_sigkill(jupyter, fake_engine, tmp_path):
    """20 quick completions, SIGKILL right after the last reply, restart: all 20 there."""
    fake = f"--LlamaServerLauncher.llama_server_path={fake_engine}"
    proc, base, _log, _env = jupyter("server", fake)
    body = {"model": DEMO_MODEL_ID, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2}
    for _ in range(20):
        assert call(base + "bodhi/v1/chat/completions", body)[0] == 200
    done = time.monotonic()
    db = tmp_path / "data" / "bodhi" / "bodhi.sqlite"

    def rows() -> int:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT count(*) FROM usage_records").fetchone()[0]

    # committed within tens of milliseconds of the reply, while the server still runs
    wait_until(lambda: rows() == 20, 0.1, "20 committed usage records")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert time.monotonic() - done < 5
    _proc, base, _log, _env = jupyter("server", fake)
    status, usage = call(base + "bodhi/app/usage?group_by=model")
    assert status == 200
    assert [(r["model"], r["requests"]) for r in usage["data"]] == [(DEMO_MODEL_ID, 20)]
