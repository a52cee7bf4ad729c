"""Pulls from the hub, driven without HTTP on our side: a local hub stand-in serves small
GGUFs and injects faults (drops, 401/403/404, slow), the pull lands in the Hugging Face
cache where discovery finds it, and records survive a restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bodhi_jupyter.models.discovery import ModelDiscovery
from bodhi_jupyter.models.pulls import (
    PullError,
    PullManager,
    classify,
    split_parts,
    validate_request,
)
from bodhi_jupyter.models.registry import ModelRegistry

from ..conftest import until
from ..hf_hub_stand_in import HubStandIn, tiny_gguf
from ..live_server import free_port

REPO = "someone/tiny-GGUF"
FILE = "tiny-Q4_K_M.gguf"


@pytest.fixture
def hub():
    with HubStandIn() as h:
        yield h


@pytest.fixture
def registry(database, _isolated_hf_home):
    return ModelRegistry(database, ModelDiscovery(hf_home=str(_isolated_hf_home),
                                                  include_packages=False))


@pytest.fixture
def make_manager(database, registry, hub):
    def make(**kwargs) -> PullManager:
        kwargs.setdefault("endpoint", hub.url)
        kwargs.setdefault("retry_wait", 0.01)
        return PullManager(database, registry, **kwargs)
    return make


def cache_files(hf_home: Path) -> list[str]:
    hub = hf_home / "hub"
    return sorted(str(p.relative_to(hub)) for p in hub.rglob("*") if p.is_file()) \
        if hub.exists() else []


def test_split_parts_and_request_checks():
    assert split_parts("x-00002-of-00003.gguf") == [
        "x-00001-of-00003.gguf", "x-00002-of-00003.gguf", "x-00003-of-00003.gguf"]
    assert split_parts("dir/m-Q8_0.gguf") == ["dir/m-Q8_0.gguf"]
    assert validate_request("a/b", "c.gguf", None) == ("a/b", "c.gguf", None)
    for repo, filename, revision, param, code in [
            ("nobody", "c.gguf", None, "repo", "invalid_value"),
            ("a/b/c", "c.gguf", None, "repo", "invalid_value"),
            ("00j-/uobX", "c.gguf", None, "repo", "invalid_value"),  # the hub's own rules
            ("a--b/c", "c.gguf", None, "repo", "invalid_value"),
            ("a/b", "c.safetensors", None, "filename", "not_gguf"),
            ("a/b", "../c.gguf", None, "filename", "invalid_value"),
            ("a/b", "/etc/c.gguf", None, "filename", "invalid_value"),
            ("a/b", None, None, "filename", "missing_required_field"),
            ("a/b", "c.gguf", "../main", "revision", "invalid_value"),
            ("a/b", "c.gguf", 3, "revision", "invalid_value")]:
        with pytest.raises(PullError) as e:
            validate_request(repo, filename, revision)
        assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


async def test_pull_lands_in_the_hf_cache_and_is_listed_at_once(make_manager, hub, registry,
                                                               _isolated_hf_home):
    data = tiny_gguf(200_000)
    hub.add(REPO, FILE, data)
    registry.files()  # an earlier scan: the throttle must not hide the new file
    pulls = make_manager()
    pull, created = await pulls.start(REPO, FILE, created_by="alice")
    assert created and pull.state == "queued" and pull.bytes_total == len(data)
    assert pull.files == [FILE]
    done = await pulls.wait(pull.id, 30)
    assert done.state == "done", done.error
    assert done.bytes_done == done.bytes_total == len(data)
    assert done.model_id == f"{REPO}:Q4_K_M"
    assert done.model_id in registry.files()  # no rescan wait: listed already
    commit = hub.repos[REPO].commit
    link = _isolated_hf_home / "hub" / "models--someone--tiny-GGUF" / "snapshots" / commit / FILE
    assert link.is_symlink() and link.read_bytes() == data
    refs = link.parents[2] / "refs" / "main"
    assert refs.read_text() == commit
    assert not list(link.parents[2].glob("blobs/*.incomplete"))
    assert hub.repos[REPO].files[FILE].served == len(data)  # downloaded once
    body = done.public()
    assert set(body) >= {"id", "repo", "filename", "revision", "state", "bytes_done",
                         "bytes_total", "speed", "eta_s", "files", "model_id", "error",
                         "created_at", "updated_at"}
    assert body["speed"] is None and body["error"] is None
    # huggingface_hub itself finds it in the cache, offline
    from huggingface_hub import try_to_load_from_cache
    assert try_to_load_from_cache(REPO, FILE, cache_dir=str(_isolated_hf_home / "hub")) \
        == str(link)


async def test_same_pull_twice_returns_the_running_one(make_manager, hub):
    hub.add(REPO, FILE, tiny_gguf(300_000), delay=0.01)
    pulls = make_manager()
    first, created = await pulls.start(REPO, FILE)
    again, created_again = await pulls.start(REPO, FILE)
    assert created and not created_again and again.id == first.id
    assert first.revision == "main"
    assert (await pulls.start(REPO, FILE, revision="main"))[0].id == first.id
    other, created_other = await pulls.start(REPO, FILE, revision=hub.repos[REPO].commit)
    assert created_other and other.id != first.id  # another revision: another pull
    await pulls.wait(first.id, 30)
    await pulls.wait(other.id, 30)
    assert [p.state for p in pulls.list()] == ["done", "done"]
    assert pulls.list()[0].id == other.id  # newest first


async def test_split_gguf_pulls_every_part(make_manager, hub, registry, _isolated_hf_home):
    parts = [f"big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    blobs = [tiny_gguf(50_000, seed=i) for i in range(3)]
    for name, data in zip(parts, blobs):
        hub.add(REPO, name, data)
    pulls = make_manager()
    pull, _ = await pulls.start(REPO, parts[1])  # any part names the whole model
    assert pull.filename == parts[0] and pull.files == parts
    assert pull.bytes_total == sum(map(len, blobs))
    done = await pulls.wait(pull.id, 30)
    assert done.state == "done", done.error
    assert done.model_id == f"{REPO}:Q8_0"
    snapshot = _isolated_hf_home / "hub" / "models--someone--tiny-GGUF" / "snapshots" / \
        hub.repos[REPO].commit
    assert [(snapshot / n).read_bytes() for n in parts] == blobs


async def test_a_drop_half_way_reconnects_and_continues(make_manager, hub):
    data = tiny_gguf(300_000)
    f = hub.add(REPO, FILE, data, drop_after=100_000, drop_times=1)
    pulls = make_manager()
    pull, _ = await pulls.start(REPO, FILE)
    done = await pulls.wait(pull.id, 30)
    assert done.state == "done", done.error
    assert len(f.gets) == 2 and f.gets[0] is None and f.gets[1].startswith("bytes=")
    assert f.served == len(data)  # nothing was sent twice


async def test_a_failed_pull_resumes_on_retry(make_manager, hub, _isolated_hf_home):
    data = tiny_gguf(400_000)
    f = hub.add(REPO, FILE, data, drop_after=150_000, drop_times=1)
    pulls = make_manager(retries=0)
    pull, _ = await pulls.start(REPO, FILE)
    failed = await pulls.wait(pull.id, 30)
    assert failed.state == "failed"
    assert failed.error["code"] == "network_error" and "retry" in failed.error["message"]
    kept = failed.bytes_done
    assert 0 < kept <= 150_000 and f.served == kept
    partial = list((_isolated_hf_home / "hub").rglob("*.incomplete"))
    assert [p.stat().st_size for p in partial] == [kept]
    retried = await pulls.retry(pull.id)
    assert retried.state == "queued" and retried.error is None
    done = await pulls.wait(pull.id, 30)
    assert done.state == "done", done.error
    assert f.served == len(data)  # the second attempt sent only the rest
    assert f.gets[-1] == f"bytes={kept}-"


async def test_cancel_removes_the_partial_file(make_manager, hub, _isolated_hf_home):
    f = hub.add(REPO, FILE, tiny_gguf(2_000_000), delay=0.02)
    pulls = make_manager()
    pull, _ = await pulls.start(REPO, FILE)
    await until(lambda: f.served > 50_000 and pulls.get(pull.id).bytes_done > 0, 20)
    live = pulls.get(pull.id)
    assert live.state == "running" and live.bytes_total == 2_000_000
    await until(lambda: pulls.get(pull.id).speed, 10)
    live = pulls.get(pull.id)
    assert live.speed > 0 and live.eta_s is not None and live.eta_s > 0
    cancelled = await pulls.cancel(pull.id)
    assert cancelled.state == "cancelled"
    assert not list((_isolated_hf_home / "hub").rglob("*.incomplete"))
    assert f.served < 2_000_000
    # a finished pull's DELETE drops the record
    assert await pulls.cancel(pull.id) is None
    assert pulls.list() == []


async def test_a_queued_pull_can_be_cancelled(make_manager, hub):
    hub.add(REPO, FILE, tiny_gguf(1_000_000), delay=0.02)
    hub.add(REPO, "other-Q8_0.gguf", tiny_gguf(1000))
    pulls = make_manager(max_concurrent=1)
    first, _ = await pulls.start(REPO, FILE)
    second, _ = await pulls.start(REPO, "other-Q8_0.gguf")
    assert pulls.get(second.id).state == "queued"
    assert (await pulls.cancel(second.id)).state == "cancelled"
    await pulls.cancel(first.id)


async def test_errors_at_start(make_manager, hub):
    hub.add(REPO, FILE, tiny_gguf(1000))
    hub.add("owner/gated", FILE, tiny_gguf(1000))
    hub.gate("owner/gated", "hf_secret_abc123")
    hub.add(REPO, "huge-Q4_0.gguf", tiny_gguf(1000))
    hub.repos[REPO].files["huge-Q4_0.gguf"].size = 10**15  # the hub says 1 PB
    pulls = make_manager()
    cases = [(("nobody/here", FILE), 404, "repo_not_found"),
             ((REPO, "missing.gguf"), 404, "file_not_found"),
             ((REPO, FILE, "v9"), 404, "revision_not_found"),
             (("owner/gated", FILE), 403, "gated"),
             ((REPO, "huge-Q4_0.gguf"), 507, "disk_full")]
    for args, status, code in cases:
        with pytest.raises(PullError) as e:
            await pulls.start(*args)
        assert (e.value.status, e.value.code) == (status, code), args
    with pytest.raises(PullError) as e:
        await pulls.start("owner/gated", FILE)
    assert "HF_TOKEN" in e.value.message
    assert pulls.list() == []  # nothing recorded

    down = make_manager(endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PullError) as e:
        await down.start(REPO, FILE)
    assert (e.value.status, e.value.code) == (502, "network_error")


async def test_hf_token_is_sent_and_never_shown(make_manager, hub, monkeypatch, caplog):
    secret = "hf_secret_abc123"
    hub.add("owner/gated", FILE, tiny_gguf(1000))
    hub.gate("owner/gated", secret)
    monkeypatch.setenv("HF_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    pulls = make_manager()
    pull, _ = await pulls.start("owner/gated", FILE)
    done = await pulls.wait(pull.id, 30)
    assert done.state == "done", done.error
    assert f"Bearer {secret}" in hub.auth_headers
    assert secret not in caplog.text and secret not in str(done.public())
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PullError) as e:
        await pulls.start("owner/gated", "x.gguf")
    assert e.value.code == "gated" and "hf_wrong" not in e.value.message


async def test_not_gguf_content_fails_and_is_removed(make_manager, hub, _isolated_hf_home):
    hub.add(REPO, FILE, b"<html>not a model</html>" * 100)
    pulls = make_manager()
    pull, _ = await pulls.start(REPO, FILE)
    failed = await pulls.wait(pull.id, 30)
    assert failed.state == "failed" and failed.error["code"] == "not_gguf"
    assert failed.error["type"] == "invalid_request_error"
    assert not [p for p in cache_files(_isolated_hf_home) if "/blobs/" in p]


async def test_errors_during_the_transfer(make_manager, hub):
    f = hub.add(REPO, FILE, tiny_gguf(1000))
    pulls = make_manager()
    f.get_status = 500
    pull, _ = await pulls.start(REPO, FILE)
    failed = await pulls.wait(pull.id, 30)
    assert failed.error["code"] == "hub_error" and failed.error["type"] == "server_error"
    f.get_status = 403  # the CDN refuses its signed link (expired): a retry gets a new one
    failed = await pulls.wait((await pulls.retry(pull.id)).id, 30)
    assert failed.error["code"] == "network_error" and "retry" in failed.error["message"]
    f.get_status = None
    hub.repos[REPO].gated, hub.repos[REPO].token = True, "t"  # access revoked meanwhile
    failed = await pulls.wait((await pulls.retry(pull.id)).id, 30)
    assert failed.error["code"] == "gated"


async def test_restart_marks_running_pulls_failed_and_retry_resumes(make_manager, hub,
                                                                     database):
    data = tiny_gguf(1_000_000)
    f = hub.add(REPO, FILE, data, delay=0.02)
    first = make_manager()
    pull, _ = await first.start(REPO, FILE)
    await until(lambda: f.served > 100_000, 20)
    # the server dies: its tasks stop without a word to the database
    for job in first._jobs.values():
        job.cancel.set()
    await until(lambda: not first._jobs, 10)  # the transfer thread noticed
    from bodhi_jupyter.store.tables import pulls
    with database.begin() as conn:  # as a killed server leaves it
        conn.execute(pulls.update().where(pulls.c.id == pull.id).values(state="running"))

    second = make_manager()
    assert second.mark_interrupted() == 1
    failed = second.get(pull.id)
    assert failed.state == "failed" and failed.error["code"] == "interrupted"
    assert "restart" in failed.error["message"]
    kept = failed.bytes_done
    assert kept > 0
    f.delay = 0
    await second.retry(pull.id)
    done = await second.wait(pull.id, 30)
    assert done.state == "done", done.error
    assert f.served < len(data) + 100_000 and f.gets[-1] == f"bytes={kept}-"


async def test_shutdown_keeps_the_bytes_for_a_retry(make_manager, hub):
    f = hub.add(REPO, FILE, tiny_gguf(1_000_000), delay=0.02)
    pulls = make_manager()
    pull, _ = await pulls.start(REPO, FILE)
    await until(lambda: f.served > 50_000, 20)
    await pulls.shutdown()
    stopped = pulls.get(pull.id)
    assert stopped.state == "failed" and stopped.error["code"] == "interrupted"


def test_classify_disk_full_and_unknown():
    import errno
    assert classify(OSError(errno.ENOSPC, "No space left on device"), "x").code == "disk_full"
    err = classify(RuntimeError("boom"), "x")
    assert (err.status, err.code) == (500, "pull_error") and "boom" not in err.message


async def test_records_on_sqlite_and_postgresql(db_url, hub, _isolated_hf_home):
    from bodhi_jupyter.store.database import Database
    from bodhi_jupyter.store.tables import pulls as pulls_table

    db = Database(url=db_url)
    db.upgrade()
    try:
        registry = ModelRegistry(db, ModelDiscovery(hf_home=str(_isolated_hf_home),
                                                    include_packages=False))
        pulls = PullManager(db, registry, endpoint=hub.url)
        hub.add(REPO, FILE, tiny_gguf(5000))
        pull, _ = await pulls.start(REPO, FILE)
        assert (await pulls.wait(pull.id, 30)).state == "done"
        with db.begin() as conn:  # sizes past 32 bits (a 70B model)
            conn.execute(pulls_table.insert().values(
                id="big", repo=REPO, filename="b.gguf", revision="main", state="running",
                bytes_done=5 * 10**9, bytes_total=40 * 10**9, files=["b.gguf"], parts=[]))
        assert pulls.mark_interrupted() == 1
        big = pulls.get("big")
        assert big.bytes_total == 40 * 10**9 and big.state == "failed"
        assert [p.id for p in pulls.list()][-1] == pull.id
    finally:
        db.dispose()


async def test_half_a_split_model_is_never_listed(make_manager, hub, registry,
                                                  _isolated_hf_home):
    parts = [f"big-Q8_0-0000{i}-of-00002.gguf" for i in (1, 2)]
    hub.add(REPO, parts[0], tiny_gguf(20_000, seed=1))
    second = hub.add(REPO, parts[1], tiny_gguf(1_000_000, seed=2), delay=0.02)
    pulls = make_manager()
    pull, _ = await pulls.start(REPO, parts[0])
    await until(lambda: second.served > 50_000, 20)
    await registry.rescan(force=True)
    assert registry.files() == {}  # part 1 is in, but not linked: nothing to list yet
    await pulls.cancel(pull.id)
    assert not [p for p in cache_files(_isolated_hf_home)
                if "/blobs/" in p or "/snapshots/" in p]
