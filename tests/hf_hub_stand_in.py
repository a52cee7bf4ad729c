"""A local stand-in for the Hugging Face hub's file endpoints, for tests without internet.

It answers what ``huggingface_hub`` asks when it downloads: ``HEAD /{repo}/resolve/{rev}/
{file}`` (302 to a content URL with ``X-Repo-Commit``, ``X-Linked-Etag`` (the SHA-256),
``X-Linked-Size``; 404/401/403 with the hub's ``X-Error-Code``), and ``GET`` of the content
URL with Range support. No Xet headers are ever sent, so the hub library never tries Xet.
Faults are set per file: drop the connection after N bytes, answer a status, go slow.
It counts the bytes it serves and records each request's Authorization header.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


def tiny_gguf(size: int = 64 * 1024, seed: int = 0) -> bytes:
    """A valid GGUF header (version 3, no tensors, one string KV) padded to ``size``."""
    import struct

    key, value = b"general.name", f"tiny-{seed}".encode()
    head = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value)
    filler = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return (head + filler)[:max(size, len(head))]


@dataclass
class HubFile:
    data: bytes | None = None
    path: Path | None = None
    sha256: str = ""
    size: int = 0
    #: faults: drop after this many bytes of a GET (each time, until cleared)
    drop_after: int | None = None
    drop_times: int = 1_000_000  # how many GETs drop before it serves normally
    status: int | None = None  # answer every request with this (HEAD included)
    get_status: int | None = None  # answer GETs of the content with this
    delay: float = 0.0  # seconds between 16 KiB chunks
    served: int = 0  # bytes of content sent
    gets: list = field(default_factory=list)  # the Range header of each GET

    def read(self, start: int, end: int) -> bytes:
        if self.data is not None:
            return self.data[start:end]
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)


@dataclass
class HubRepo:
    commit: str
    files: dict[str, HubFile] = field(default_factory=dict)
    gated: bool = False  # needs the token below
    token: str | None = None


class HubStandIn:
    """Start with ``with HubStandIn() as hub``; ``hub.url`` is HF_ENDPOINT."""

    def __init__(self):
        self.repos: dict[str, HubRepo] = {}
        self.auth_headers: list[str | None] = []
        self.down = False  # every request: connection closed at once
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # the content comes from another origin, as the hub's CDN: no token goes there
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.cdn.daemon_threads = True
        self.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def __enter__(self) -> HubStandIn:
        for server in (self.server, self.cdn):
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for server in (self.server, self.cdn):
            server.shutdown()
            server.server_close()

    def add(self, repo: str, name: str, data: bytes | None = None, path: Path | None = None,
            **faults) -> HubFile:
        r = self.repos.setdefault(repo, HubRepo(commit=hashlib.sha1(repo.encode()).hexdigest()))
        if path is not None:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            f_ = HubFile(path=Path(path), sha256=digest.hexdigest(), size=Path(path).stat().st_size)
        else:
            f_ = HubFile(data=data, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        for k, v in faults.items():
            setattr(f_, k, v)
        r.files[name] = f_
        return f_

    def gate(self, repo: str, token: str) -> None:
        self.repos[repo].gated, self.repos[repo].token = True, token


_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CONTENT = re.compile(r"^/_content/([^/]+/[^/]+)/(.+)$")
CHUNK = 16 * 1024


def _handler(hub: HubStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _answer(self, status: int, headers: dict | None = None, body: bytes = b""):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str | None, commit: str | None = None):
            headers = {"Content-Type": "application/json"}
            if code:
                headers["X-Error-Code"] = code
            if commit:
                headers["X-Repo-Commit"] = commit
            self._answer(status, headers, b'{"error": "%s"}' % (code or "error").encode())

        def _lookup(self, repo_id: str, rev: str | None, name: str, signed: bool = False):
            """(repo, file) or None after answering the hub's error."""
            hub.auth_headers.append(self.headers.get("Authorization"))
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound")  # as the hub answers without a token
                return None
            token_ok = self.headers.get("Authorization") == f"Bearer {repo.token}"
            if not signed and repo.gated and not token_ok:
                self._error(401 if "Authorization" not in self.headers else 403, "GatedRepo")
                return None
            if rev is not None and rev not in ("main", repo.commit):
                self._error(404, "RevisionNotFound")
                return None
            f = repo.files.get(name)
            if f is None:
                self._error(404, "EntryNotFound", repo.commit)
                return None
            if f.status:
                self._error(f.status, None)
                return None
            return repo, f

        def do_HEAD(self):
            self._resolve()

        def do_GET(self):
            if hub.down:
                self.close_connection = True
                return
            m = _CONTENT.match(unquote(self.path))
            if m:
                return self._content(m.group(1), m.group(2))
            self._resolve()

        def _resolve(self):
            if hub.down:
                self.close_connection = True
                return
            m = _RESOLVE.match(unquote(self.path))
            if not m:
                return self._error(404, None)
            found = self._lookup(m.group(1), m.group(2), m.group(3))
            if found is None:
                return
            repo, f = found
            self._answer(302, {
                "Location": f"{hub.cdn_url}/_content/{m.group(1)}/{m.group(3)}",
                "X-Repo-Commit": repo.commit, "ETag": f'"{f.sha256}"',
                "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})

        def _content(self, repo_id: str, name: str):
            found = self._lookup(repo_id, None, name, signed=True)
            if found is None:
                return
            _repo, f = found
            rng = self.headers.get("Range")
            f.gets.append(rng)
            if f.get_status:
                return self._error(f.get_status, None)
            start = 0
            if rng:
                start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            end = f.size
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(end - start))
            self.send_header("ETag", f'"{f.sha256}"')
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{f.size}")
            self.end_headers()
            drop = None
            with hub._lock:
                if f.drop_after is not None and f.drop_times > 0:
                    f.drop_times -= 1
                    drop = start + f.drop_after
            pos = start
            while pos < end:
                stop = min(pos + CHUNK, end, drop if drop is not None else end)
                if stop <= pos:
                    break
                try:
                    self.wfile.write(f.read(pos, stop))
                    self.wfile.flush()
                except OSError:
                    break
                with hub._lock:
                    f.served += stop - pos
                pos = stop
                if f.delay:
                    time.sleep(f.delay)
            if pos < end:  # dropped half-way
                self.close_connection = True

    return Handler
