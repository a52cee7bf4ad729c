"""Pulling GGUF files from the Hugging Face hub into its cache, in the background.

Files land where ``huggingface_hub`` puts them (``<hf_home>/hub/models--OWNER--NAME/blobs``
with ``snapshots/<commit>/<file>`` links and ``refs/<revision>``), so discovery and every
other tool that reads that cache find them. The hub library does the HTTP (token from
``HF_TOKEN`` or the hub's token file, error mapping, redirects) and links the finished blob
into the cache; the transfer itself is ours, because huggingface_hub 2.4 throws a partial
download away, and a pull must survive a dropped connection, a retry and a server restart:
the partial file is ``blobs/<etag>.incomplete`` and each attempt continues it with a Range
request. Plain HTTP only (never Xet), so that resuming works against any hub endpoint.

The records (table ``pulls``) outlive the server; a pull that was running when the server
stopped is marked failed and can be retried, resuming where it stopped. huggingface_hub is
imported only when a pull runs.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from traitlets import Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..background import BackgroundTasks

if TYPE_CHECKING:
    from ..store.database import Database
    from .registry import ModelRegistry

#: what a request may name (the same patterns are in the OpenAPI document)
REPO_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*$"
FILENAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._+-]*(/[A-Za-z0-9_][A-Za-z0-9._+-]*)*\.gguf$"
REVISION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$"
MAX_REPO, MAX_FILENAME, MAX_REVISION = 200, 1000, 255

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
GGUF_MAGIC = b"GGUF"
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
GATED_HELP = ("accept its terms on huggingface.co with your account if it is gated, then set "
              "HF_TOKEN in the Jupyter server's environment to a token of that account "
              "(https://huggingface.co/settings/tokens) and restart the server")


class PullError(Exception):
    """A pull that cannot start or did not finish: ``status`` is the HTTP answer when it
    happens at request time, ``code`` what a client can act on."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param

    def as_record(self) -> dict:
        from ..errors import error_type

        return {"message": self.message, "type": error_type(self.status), "code": self.code}


class PullNotFound(LookupError):
    pass


class Cancelled(Exception):
    """Raised inside the transfer when the pull was cancelled (or the server stops)."""


def split_parts(filename: str) -> list[str]:
    """Every part of a split GGUF (``x-00001-of-00003.gguf`` ...), else the file alone."""
    m = _SPLIT.match(filename)
    if not m or int(m.group(3)) < 1:
        return [filename]
    stem, total = m.group(1), int(m.group(3))
    return [f"{stem}-{i:05d}-of-{total:05d}.gguf" for i in range(1, total + 1)]


def validate_request(repo, filename, revision) -> tuple[str, str, str | None]:
    """The checks of ``POST pulls``, as PullError(400) naming the field."""
    checks = (("repo", repo, REPO_PATTERN, MAX_REPO, "owner/name"),
              ("filename", filename, FILENAME_PATTERN, MAX_FILENAME, "a path ending in .gguf"),
              ("revision", revision, REVISION_PATTERN, MAX_REVISION, "a branch, tag or commit"))
    for name, value, pattern, limit, what in checks:
        if value is None and name == "revision":
            continue
        if value is None:
            raise PullError(400, "missing_required_field", f"'{name}' is required", name)
        if not isinstance(value, str) or len(value) > limit or not re.match(pattern, value):
            code = "not_gguf" if name == "filename" and isinstance(value, str) \
                and not value.endswith(".gguf") else "invalid_value"
            raise PullError(400, code, f"'{name}' must be {what} (at most {limit} characters)",
                            name)
    validate_repo(repo)
    return repo, filename, revision


def validate_repo(repo: str, param: str = "repo") -> None:
    """The hub's finer rules for a repository id (no '--' or '..', no '-' or '.' at either
    end of a part), as PullError(400) naming ``param``: check before asking the hub."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo, str) or len(repo) > MAX_REPO or not re.match(REPO_PATTERN, repo):
        raise PullError(400, "invalid_value", f"'{param}' must name a repository as "
                        "owner/name", param)
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise PullError(400, "invalid_value", f"'{param}' is not a valid repository id: {e}",
                        param) from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


@dataclass
class Part:
    """One file of a pull as the hub described it."""

    name: str
    size: int | None
    etag: str
    commit: str
    url: str  # where the bytes are (the hub's redirect target)

    def as_json(self) -> dict:
        return {"name": self.name, "size": self.size, "etag": self.etag,
                "commit": self.commit, "url": self.url}


@dataclass
class Pull:
    id: str
    repo: str
    filename: str
    revision: str | None
    state: str
    bytes_done: int
    bytes_total: int | None
    files: list[str]
    model_id: str | None
    error: dict | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    speed: float | None = None
    eta_s: float | None = None
    parts: list[dict] = field(default_factory=list)

    def public(self) -> dict:
        return {"id": self.id, "repo": self.repo, "filename": self.filename,
                "revision": self.revision, "state": self.state, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "speed": self.speed, "eta_s": self.eta_s,
                "files": list(self.files), "model_id": self.model_id, "error": self.error,
                "created_by": self.created_by, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at)}


class _Job:
    """A running pull's live state, shared by the event loop and its transfer thread."""

    def __init__(self):
        self.cancel = threading.Event()
        self.cancel_is_delete = False  # cancelled by a person, not by the server stopping
        self.waiting = True  # for a free slot; not yet in the transfer thread
        self.done = 0
        self.total: int | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)

    def progress(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if not self._samples or now - self._samples[-1][0] >= 0.1:
            self._samples.append((now, self.done))

    def speed(self, window: float = 3.0) -> float | None:
        """Bytes per second over the last few seconds."""
        now = time.monotonic()
        recent = [s for s in self._samples if now - s[0] <= window]
        if len(recent) < 2:
            return None
        (t0, b0), (t1, b1) = recent[0], recent[-1]
        return (b1 - b0) / max(now - t0, t1 - t0, 1e-3)


class PullManager(LoggingConfigurable):
    """Starts, tracks, cancels and resumes pulls; the records are in the database."""

    endpoint = Unicode(
        help="The Hugging Face hub (or a mirror) to pull from. Default: $HF_ENDPOINT or "
        "https://huggingface.co. The token is the hub library's: $HF_TOKEN, else the token "
        "file under HF_HOME; it is sent only to this endpoint and never logged.",
    ).tag(config=True)

    @default("endpoint")
    def _default_endpoint(self):
        return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")

    max_concurrent = Int(
        2, help="Pulls that transfer at the same time; more wait as 'queued'.",
    ).tag(config=True)

    retries = Int(
        3, help="Times one attempt reconnects after the connection drops, continuing where "
        "it stopped; then the pull fails (a retry resumes it too).",
    ).tag(config=True)

    retry_wait = Float(1.0, help="Seconds between two reconnects.").tag(config=True)

    timeout = Float(
        30.0, help="Seconds without a byte from the hub before a connection counts as "
        "dropped.",
    ).tag(config=True)

    keep_free = Int(
        0, help="Bytes that must stay free on the cache's disk after a pull; a pull that "
        "would leave less is refused (507 disk_full) before it starts.",
    ).tag(config=True)

    def __init__(self, database: Database, registry: ModelRegistry, **kwargs):
        super().__init__(**kwargs)
        self.database = database
        self.registry = registry
        self._jobs: dict[str, _Job] = {}
        self._tasks = BackgroundTasks(self.log)
        self._task_of: dict[str, asyncio.Task] = {}
        self._slots: asyncio.Semaphore | None = None
        self._blob_locks: dict[Path, threading.Lock] = {}  # one writer per partial file

    @property
    def cache_dir(self) -> Path:
        """The hub cache discovery scans."""
        return Path(self.registry.discovery.hf_home) / "hub"

    # -- records ---------------------------------------------------------------------------
    def _row_to_pull(self, row) -> Pull:
        pull = Pull(row.id, row.repo, row.filename, row.revision, row.state, row.bytes_done,
                    row.bytes_total, list(row.files or []), row.model_id, row.error,
                    row.created_by, row.created_at, row.updated_at,
                    parts=list(row.parts or []))
        job = self._jobs.get(row.id)
        if job is not None and row.state == "running":
            pull.bytes_done = job.done
            pull.bytes_total = job.total if job.total is not None else pull.bytes_total
            pull.speed = job.speed()
            if pull.speed and pull.bytes_total is not None:
                pull.eta_s = round(max(pull.bytes_total - pull.bytes_done, 0) / pull.speed, 1)
        return pull

    def _update(self, pull_id: str, **values) -> Pull:
        from ..store.tables import pulls as t

        values["updated_at"] = _now()
        with self.database.begin() as conn:
            row = conn.execute(t.update().where(t.c.id == pull_id).values(values)
                               .returning(t)).first()
        if row is None:
            raise PullNotFound(pull_id)
        return self._row_to_pull(row)

    def get(self, pull_id: str) -> Pull:
        from sqlalchemy import select

        from ..store.tables import pulls as t

        with self.database.read() as conn:
            row = conn.execute(select(t).where(t.c.id == pull_id)).first()
        if row is None:
            raise PullNotFound(f"No pull with id '{pull_id}'")
        return self._row_to_pull(row)

    def list(self) -> list[Pull]:
        """Every pull, newest first."""
        from sqlalchemy import select

        from ..store.tables import pulls as t

        with self.database.read() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at.desc(),
                                                   t.c.id.desc())).all()
        return [self._row_to_pull(r) for r in rows]

    def _active_for(self, repo: str, filename: str, revision: str | None) -> Pull | None:
        for pull in self.list():
            if (pull.state in ACTIVE and (pull.repo, pull.filename, pull.revision)
                    == (repo, filename, revision)):
                return pull
        return None

    def mark_interrupted(self) -> int:
        """At start-up: pulls the last run left going are failed, with the bytes that are
        on disk, so that a retry resumes them. Returns how many."""
        from sqlalchemy import select

        from ..store.tables import pulls as t

        error = PullError(503, "interrupted", "The pull was interrupted by a server restart; "
                          "retry it to resume").as_record()
        with self.database.begin() as conn:
            rows = conn.execute(select(t.c.id, t.c.repo, t.c.parts)
                                .where(t.c.state.in_(ACTIVE))).all()
            for row in rows:
                conn.execute(t.update().where(t.c.id == row.id).values(
                    state="failed", error=error, updated_at=_now(),
                    bytes_done=self._bytes_on_disk(row.repo, row.parts or [])))
        return len(rows)

    # -- paths in the hub cache ------------------------------------------------------------
    def _repo_dir(self, repo: str) -> Path:
        return self.cache_dir / ("models--" + repo.replace("/", "--"))

    def _paths(self, repo: str, part: dict) -> tuple[Path, Path, Path]:
        """(blob, its partial file, the snapshot link)."""
        base = self._repo_dir(repo)
        blob = base / "blobs" / part["etag"]
        return (blob, blob.with_name(blob.name + ".incomplete"),
                base / "snapshots" / part["commit"] / part["name"])

    def _bytes_on_disk(self, repo: str, parts: list[dict]) -> int:
        done = 0
        for part in parts:
            blob, partial, link = self._paths(repo, part)
            for path in (link, blob, partial):
                if path.exists():
                    done += path.stat().st_size
                    break
        return done

    def _remove_partials(self, repo: str, parts: list[dict]) -> None:
        """The partial files, and the finished parts of a split model that no snapshot
        links to yet (the pull never got to link them)."""
        snapshots = self._repo_dir(repo) / "snapshots"
        linked = {p.resolve() for p in snapshots.rglob("*") if p.is_symlink()} \
            if snapshots.exists() else set()
        for part in parts:
            blob, partial, _link = self._paths(repo, part)
            partial.unlink(missing_ok=True)
            if blob.exists() and blob.resolve() not in linked:
                blob.unlink()

    # -- starting --------------------------------------------------------------------------
    async def start(self, repo: str, filename: str, revision: str | None = None,
                    created_by: str | None = None) -> tuple[Pull, bool]:
        """Check with the hub (exists, accessible, fits the disk), record it and pull in
        the background. The same repo, file and revision while one runs: that one."""
        repo, filename, revision = validate_request(repo, filename, revision)
        if not self.registry.local:
            raise PullError(409, "local_models_off", "this server runs no local models "
                            "(ModelRegistry.local_models is off): a downloaded file would "
                            "never be served")
        revision = revision or "main"
        filename = split_parts(filename)[0]  # any part names the whole split model
        existing = self._active_for(repo, filename, revision)
        if existing is not None:
            return existing, False
        try:
            parts = await _in_thread(self._describe, repo, filename, revision)
        except Exception as e:  # answered at once: nothing is recorded
            raise classify(e, self.endpoint) from None
        self._check_disk(repo, parts)
        existing = self._active_for(repo, filename, revision)  # one started meanwhile
        if existing is not None:
            return existing, False
        from ..store.tables import pulls as t

        now = _now()
        with self.database.begin() as conn:  # error left out: SQL NULL, not JSON null
            row = conn.execute(t.insert().values(
                id=uuid.uuid4().hex, repo=repo, filename=filename, revision=revision,
                state="queued", bytes_done=self._bytes_on_disk(repo, parts),
                bytes_total=_total(parts), files=[p["name"] for p in parts], parts=parts,
                created_by=created_by, created_at=now, updated_at=now).returning(t)).one()
        self.log.info("bodhi: pulling %s %s (%s) from %s", repo, filename, revision,
                      self.endpoint)
        self._spawn(row.id, parts)
        return self._row_to_pull(row), True

    async def retry(self, pull_id: str) -> Pull:
        """Run a failed or cancelled pull again; it continues from the bytes on disk."""
        pull = self.get(pull_id)
        if pull.state in ACTIVE:
            return pull
        pull = self._update(pull_id, state="queued", error=None, model_id=None,
                            bytes_done=self._bytes_on_disk(pull.repo, pull.parts))
        self._spawn(pull_id, None)
        return pull

    def _spawn(self, pull_id: str, parts: list[dict] | None) -> None:
        self._jobs[pull_id] = _Job()
        task = self._tasks.spawn(self._run(pull_id, parts), f"pull {pull_id}")
        self._task_of[pull_id] = task
        task.add_done_callback(lambda _t: self._task_of.pop(pull_id, None))

    def _check_disk(self, repo: str, parts: list[dict]) -> None:
        """Refuse a pull that the disk cannot hold (the sizes are the hub's)."""
        needed = 0
        for part in parts:
            blob, partial, link = self._paths(repo, part)
            if part["size"] is None or link.exists() or blob.exists():
                continue
            needed += part["size"] - (partial.stat().st_size if partial.exists() else 0)
        where = self.cache_dir
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        if needed + self.keep_free > free:
            raise PullError(507, "disk_full", f"Not enough disk space: the pull needs "
                            f"{needed / 1e9:.2f} GB and {where} has {free / 1e9:.2f} GB free")

    # -- the background job ----------------------------------------------------------------
    async def _run(self, pull_id: str, parts: list[dict] | None) -> None:
        job = self._jobs[pull_id]
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(self.max_concurrent, 1))
        try:
            async with self._slots:
                job.waiting = False
                if job.cancel.is_set():
                    raise Cancelled()
                pull = self.get(pull_id)
                job.done = pull.bytes_done
                self._update(pull_id, state="running")
                if parts is None:  # a retry: ask the hub again (the file may have changed)
                    parts = await _in_thread(self._describe, pull.repo, pull.filename,
                                             pull.revision)
                    self._check_disk(pull.repo, parts)
                    stale = [p for p in pull.parts if p not in parts]
                    self._remove_partials(pull.repo, stale)
                    job.done = self._bytes_on_disk(pull.repo, parts)
                    self._update(pull_id, parts=parts, files=[p["name"] for p in parts],
                                 bytes_total=_total(parts), bytes_done=job.done)
                job.total = _total(parts)
                await _in_thread(self._transfer, pull.repo, pull.revision, parts, job)
                await self.registry.rescan(force=True)  # listed as soon as it is done
                model_id = self._model_id(pull.repo, parts[0])
                self._update(pull_id, state="done", bytes_done=job.done,
                             bytes_total=job.total or job.done, model_id=model_id)
                self.log.info("bodhi: pulled %s %s as %s", pull.repo, pull.filename, model_id)
        except (Cancelled, asyncio.CancelledError) as e:
            job.cancel.set()
            self._finish_cancelled(pull_id, job)
            if isinstance(e, asyncio.CancelledError) and not job.cancel_is_delete:
                raise  # the server stops
        except Exception as e:
            err = classify(e, self.endpoint)
            if err.status >= 500 and err.code not in ("network_error", "disk_full"):
                self.log.warning("bodhi: pull %s failed: %r", pull_id, e)
            self.log.info("bodhi: pull %s failed: %s", pull_id, err.message)
            self._update(pull_id, state="failed", error=err.as_record(), bytes_done=job.done)
        finally:
            self._jobs.pop(pull_id, None)

    def _finish_cancelled(self, pull_id: str, job: _Job) -> None:
        pull = self.get(pull_id)
        if job.cancel_is_delete:
            self._remove_partials(pull.repo, pull.parts)
            self._update(pull_id, state="cancelled", bytes_done=self._bytes_on_disk(
                pull.repo, pull.parts))
        else:  # the server stops: keep the bytes, a retry resumes
            self._update(pull_id, state="failed", error=PullError(
                503, "interrupted", "The pull was interrupted by a server shutdown; retry it "
                "to resume").as_record())

    def _model_id(self, repo: str, first: dict) -> str | None:
        link = str(self._paths(repo, first)[2])
        for f in self.registry.files().values():
            if f.path == link:
                return f.id
        return None

    # -- in the transfer thread ------------------------------------------------------------
    def _describe(self, repo: str, filename: str, revision: str | None) -> list[dict]:
        """Ask the hub about each part: size, checksum (etag), commit, download URL."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        parts = []
        for name in split_parts(filename):
            url = hf_hub_url(repo, name, revision=revision, endpoint=self.endpoint)
            meta = get_hf_file_metadata(url, timeout=self.timeout, endpoint=self.endpoint)
            if not meta.commit_hash or not meta.etag:
                raise PullError(502, "hub_error", f"{self.endpoint} answered for {name} "
                                "without a commit or ETag: is HF_ENDPOINT a Hugging Face hub?")
            parts.append(Part(name, meta.size, meta.etag, meta.commit_hash,
                              meta.location or url).as_json())
        return parts

    def _transfer(self, repo: str, revision: str | None, parts: list[dict], job: _Job) -> None:
        """Fetch each part not yet in the cache and verify it; only when every part is
        there, let huggingface_hub link them into the snapshot (and write the revision's
        ref), so that discovery never lists half a split model."""
        from huggingface_hub import hf_hub_download

        for part in parts:
            blob, partial, link = self._paths(repo, part)
            if link.exists():
                continue
            lock = self._blob_locks.setdefault(blob, threading.Lock())
            while not lock.acquire(timeout=0.1):  # another pull fetches the same file
                if job.cancel.is_set():
                    raise Cancelled()
            try:
                if not blob.exists():
                    try:
                        self._fetch(part, partial, job)
                    except NotGGUF:
                        partial.unlink(missing_ok=True)  # never worth resuming
                        raise
                    _verify(part, partial)
                    os.replace(partial, blob)
            finally:
                lock.release()
        if job.cancel.is_set():
            raise Cancelled()
        for part in parts:
            if not self._paths(repo, part)[2].exists():
                hf_hub_download(repo, part["name"], revision=part["commit"],
                                cache_dir=str(self.cache_dir), endpoint=self.endpoint,
                                etag_timeout=self.timeout)
        if (revision or "main") != parts[0]["commit"]:
            ref = self._repo_dir(repo) / "refs" / (revision or "main")
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(parts[0]["commit"])

    def _fetch(self, part: dict, partial: Path, job: _Job) -> None:
        """Download into the partial file, continuing what is there; reconnect on a drop."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, \
            http_stream_backoff

        headers = build_hf_headers()  # the token, if any, from HF_TOKEN or the token file
        headers["Accept-Encoding"] = "identity"
        if urlparse(part["url"]).netloc != urlparse(self.endpoint).netloc:
            headers.pop("authorization", None)  # a CDN's signed URL: no token to it
        partial.parent.mkdir(parents=True, exist_ok=True)
        size = part["size"]
        with open(partial, "ab") as f:
            have = f.tell()
            if size is not None and have > size:
                f.truncate(0)
                have = 0
            attempts = 0
            while size is None or have < size:
                if job.cancel.is_set():
                    raise Cancelled()
                request = dict(headers)
                if have:
                    request["Range"] = f"bytes={have}-"
                try:
                    with http_stream_backoff("GET", part["url"], headers=request,
                                             timeout=self.timeout, max_retries=0,
                                             retry_on_status_codes=()) as r:
                        if r.status_code in (401, 403) and "authorization" not in headers:
                            raise PullError(502, "network_error", "The hub's download link "
                                            f"was refused ({r.status_code}), perhaps expired;"
                                            " retry the pull for a new one")
                        hf_raise_for_status(r)
                        if have and r.status_code != 206:  # the Range was ignored
                            f.seek(0)
                            f.truncate(0)
                            job.progress(-have)
                            have = 0
                        for chunk in r.iter_bytes():
                            if job.cancel.is_set():
                                raise Cancelled()
                            if have < 4 and not GGUF_MAGIC[have:].startswith(
                                    chunk[:4 - have]):
                                raise NotGGUF(part["name"])
                            f.write(chunk)
                            have += len(chunk)
                            job.progress(len(chunk))
                            attempts = 0  # bytes arrived: the next drop may reconnect again
                    if size is None:
                        break
                    if have < size:
                        raise httpx2.RemoteProtocolError("the connection closed early")
                except (httpx2.TransportError, httpx2.TimeoutException) as e:
                    f.flush()
                    attempts += 1
                    if attempts > self.retries:
                        raise
                    self.log.info("bodhi: pull of %s dropped at %d bytes (%s); reconnecting",
                                  part["name"], have, e)
                    if job.cancel.wait(self.retry_wait):
                        raise Cancelled() from None

    # -- cancelling, waiting, stopping -----------------------------------------------------
    async def cancel(self, pull_id: str) -> Pull | None:
        """Cancel an active pull (it stays listed as cancelled, partial files removed);
        a finished one is removed from the list (the model files stay). None then."""
        pull = self.get(pull_id)
        job, task = self._jobs.get(pull_id), self._task_of.get(pull_id)
        if pull.state in ACTIVE and job is not None and task is not None:
            job.cancel_is_delete = True
            job.cancel.set()
            if job.waiting:  # queued behind other pulls: nothing runs yet
                task.cancel()
            await asyncio.wait([task])
            if self.get(pull_id).state in ACTIVE:  # cancelled before it began
                self._finish_cancelled(pull_id, job)
            return self.get(pull_id)
        self._remove_partials(pull.repo, pull.parts)
        from ..store.tables import pulls as t

        with self.database.begin() as conn:
            conn.execute(t.delete().where(t.c.id == pull_id))
        return None

    async def wait(self, pull_id: str, timeout: float | None = None) -> Pull:
        """Until the pull has finished (done, failed or cancelled)."""
        task = self._task_of.get(pull_id)
        if task is not None:
            await asyncio.wait([task], timeout=timeout)
        return self.get(pull_id)

    async def shutdown(self) -> None:
        """Stop every transfer; the pulls are failed and keep their bytes for a retry."""
        for job in self._jobs.values():
            job.cancel.set()
        await self._tasks.cancel_all()


class NotGGUF(Exception):
    pass


def _total(parts: list[dict]) -> int | None:
    sizes = [p["size"] for p in parts]
    return None if any(s is None for s in sizes) else sum(sizes)


def _verify(part: dict, path: Path) -> None:
    """The file is a GGUF and, where the hub's ETag is a SHA-256 (LFS files), matches it."""
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            path.unlink(missing_ok=True)
            raise NotGGUF(part["name"])
    if part["size"] is not None and path.stat().st_size != part["size"]:
        path.unlink(missing_ok=True)
        raise PullError(502, "checksum_mismatch", f"{part['name']}: got "
                        f"{path.stat().st_size if path.exists() else 0} bytes, the hub said "
                        f"{part['size']}")
    if _SHA256.match(part["etag"]):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != part["etag"]:
            path.unlink(missing_ok=True)
            raise PullError(502, "checksum_mismatch", f"{part['name']}: the SHA-256 of the "
                            "download does not match the hub's; retry the pull")


async def _in_thread(fn, *args):
    """Run blocking work in a daemon thread (a stalled download must not hold up the
    interpreter's exit, as the default executor's threads would)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def target():
        try:
            outcome = (fn(*args), None)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            outcome = (None, e)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop closed meanwhile (the server stopped)
            pass

    threading.Thread(target=target, name="bodhi-pull", daemon=True).start()
    return await future


def _settle(future: asyncio.Future, result, exc) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def classify(exc: BaseException, endpoint: str) -> PullError:
    """The PullError for whatever a pull ran into (hub errors, network, disk, content)."""
    if isinstance(exc, PullError):
        return exc
    if isinstance(exc, NotGGUF):
        return PullError(422, "not_gguf", f"{exc} is not a GGUF file (it does not start "
                         "with the GGUF magic bytes); it was removed")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PullError(507, "disk_full", f"The disk is full: {exc.strerror}; the partial "
                         "file is kept, free some space and retry")
    try:
        import httpx2
        from huggingface_hub import errors as hub
    except ImportError:  # pragma: no cover
        return PullError(500, "pull_error", str(exc))
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hub.GatedRepoError):
        return PullError(403, "gated", f"The repository is gated or private and the hub "
                         f"refused access ({status}): {GATED_HELP}")
    if isinstance(exc, hub.RevisionNotFoundError):
        return PullError(404, "revision_not_found", "The hub has no such revision of the "
                         "repository")
    if isinstance(exc, hub.RemoteEntryNotFoundError):
        return PullError(404, "file_not_found", "The repository has no such file")
    if isinstance(exc, hub.RepositoryNotFoundError):
        return PullError(404, "repo_not_found", "The hub has no such repository, or it is "
                         f"private and the server has no token for it: {GATED_HELP}")
    if isinstance(exc, hub.HfHubHTTPError) and status in (401, 403):
        return PullError(403, "gated", f"The hub refused access ({status}): {GATED_HELP}")
    if isinstance(exc, hub.LocalEntryNotFoundError):  # the hub went away at the very end
        return PullError(502, "network_error", f"Could not reach the hub at {endpoint}; "
                         "retry the pull")
    if isinstance(exc, hub.OfflineModeIsEnabled):
        return PullError(502, "network_error", "HF_HUB_OFFLINE is set in the server's "
                         "environment: the hub cannot be reached")
    if isinstance(exc, (httpx2.TransportError, httpx2.TimeoutException, ConnectionError)):
        return PullError(502, "network_error", f"Could not reach the hub at {endpoint} "
                         f"({type(exc).__name__}); the partial file is kept, retry to resume")
    if isinstance(exc, hub.HfHubHTTPError):
        return PullError(502, "hub_error", f"The hub answered {status}; retry later")
    return PullError(500, "pull_error", f"The pull failed: {type(exc).__name__}")
