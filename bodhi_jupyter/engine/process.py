"""One llama-server child process: start, readiness, exit watching and stopping."""

from __future__ import annotations

import asyncio
import ctypes
import enum
import functools
import hashlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..background import log_failure
from ..models.registry import ResolvedModel
from .launcher import LlamaServerLauncher
from .upstream import UpstreamError, UpstreamPool, UpstreamResponse

_log = logging.getLogger(__name__)


class EngineState(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"
    FAILED = "failed"


class EngineStartError(RuntimeError):
    """The engine did not become ready; the message carries the end of its log."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message + (f"\n--- engine log ---\n{log_tail}" if log_tail else ""))
        self.summary = message
        self.log_tail = log_tail


class EngineFailed(RuntimeError):
    """The engine could not answer a request it had accepted (HTTP 502); ``cause`` names
    why, its exit code when it died."""

    def __init__(self, model_id: str, cause: str):
        super().__init__(f"The engine for '{model_id}' failed while answering: {cause}")
        self.model_id, self.cause = model_id, cause


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent(parent_pid: int) -> None:  # pragma: no cover - runs in the child
    """preexec_fn: ask the kernel to SIGKILL the child when its parent dies, even by
    SIGKILL, and give up at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


def tail_lines(path: Path, lines: int, block: int = 65536) -> list[str]:
    """The last ``lines`` lines of a file, reading backwards only as far as needed."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= lines:
                start = max(0, end - block)
                f.seek(start)
                data = f.read(end - start) + data
                end = start
    except OSError:
        return []
    out = data.decode("utf-8", "replace").splitlines()
    return out[-lines:] if lines else []


@functools.lru_cache(maxsize=512)  # asked twice per request; the repr of the options is the cost
def engine_key(owner: str, model: ResolvedModel, embedding: bool) -> str:
    raw = repr((owner, model.id, model.path, model.server, embedding)).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


class EngineProcess:
    """A supervised llama-server. Owned and driven by the supervisor."""

    def __init__(self, owner: str, model: ResolvedModel, embedding: bool,
                 launcher: LlamaServerLauncher, log_dir: Path,
                 on_exit: Callable[["EngineProcess"], None] | None = None,
                 log: logging.Logger | None = None):
        self.owner, self.model, self.embedding = owner, model, embedding
        self.launcher, self.on_exit = launcher, on_exit
        self.log = log or _log
        self.id = engine_key(owner, model, embedding)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.id)
        self.log_path = Path(log_dir) / f"{safe}-{self.id}.log"
        self.state = EngineState.STARTING
        self.proc: asyncio.subprocess.Process | None = None
        self.port: int | None = None
        self.pool: UpstreamPool | None = None
        self.started_at: float | None = None  # wall clock, for display
        self.last_used = time.monotonic()
        self.in_flight = 0
        self.exit_code: int | None = None
        self.command: list[str] = []
        self._exited: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- start -----------------------------------------------------------------------------
    async def start(self, timeout: float, port_attempts: int = 3) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(port_attempts):
            try:
                await self._spawn_and_wait(timeout)
                return
            except EngineStartError as e:
                tail = e.log_tail.lower()
                port_clash = "couldn't bind" in tail or "address already in use" in tail
                if not port_clash or attempt == port_attempts - 1:
                    self.state = EngineState.FAILED
                    raise

    async def _spawn_and_wait(self, timeout: float) -> None:
        host = self.launcher.host
        self.port = free_port(host)
        api_key = secrets.token_urlsafe(24)
        cmd = self.command = self.launcher.command(self.model, self.port, self.embedding)
        env = {**os.environ, "LLAMA_API_KEY": api_key}
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                      f"{subprocess.list2cmdline(cmd)}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
        self.pool = UpstreamPool(host, self.port, api_key)
        exited = self._exited = asyncio.ensure_future(self.proc.wait())
        deadline = time.monotonic() + timeout
        try:
            while True:
                if exited.done():
                    raise EngineStartError(
                        f"llama-server for '{self.model.id}' exited during start-up with "
                        f"code {self.proc.returncode}", self.log_tail())
                if await self._healthy():
                    break
                if time.monotonic() > deadline:
                    await self._kill()
                    raise EngineStartError(
                        f"llama-server for '{self.model.id}' was not ready within "
                        f"{timeout:g} s", self.log_tail())
                await asyncio.wait([exited], timeout=0.05)
        except BaseException:
            self.pool.close()
            if not exited.done():
                await self._kill()
            raise
        self.state = EngineState.READY
        self.started_at = time.time()
        self.last_used = time.monotonic()
        self._watcher = asyncio.ensure_future(self._watch(exited))
        self._watcher.add_done_callback(lambda t: log_failure(t, self.log))

    async def _healthy(self) -> bool:
        try:
            resp = await self.pool.request("GET", "/health", timeout=2)
            await resp.read()
        except (UpstreamError, asyncio.TimeoutError):
            return False
        return resp.status == 200

    async def _watch(self, exited: asyncio.Future) -> None:
        self.exit_code = await exited
        self.pool.close()
        if self.state in (EngineState.READY, EngineState.STARTING):
            self.state = EngineState.CRASHED
        elif self.state == EngineState.STOPPING:
            self.state = EngineState.STOPPED
        if self.on_exit:
            self.on_exit(self)

    # -- requests ------------------------------------------------------------------------
    async def forward(self, path: str, payload: bytes) -> UpstreamResponse:
        """POST a request to the engine. Failing to get an answer, or losing the engine
        while its body streams, raises ``EngineFailed`` with the cause."""
        try:
            return await self.pool.request("POST", path, payload, on_failure=self.failure)
        except UpstreamError as e:
            raise await self.failure(e) from None

    async def failure(self, error: Exception) -> EngineFailed:
        """What a broken exchange means: when the engine died (a broken socket is usually
        the first sign; the exit shows a moment later), its exit code says more."""
        if self._exited is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), 1.0)
            except asyncio.TimeoutError:
                pass
        return EngineFailed(self.model.id, self.exit_cause or str(error))

    @property
    def exit_cause(self) -> str | None:
        """"llama-server exited with code N" once the process has ended, else None."""
        code = self.proc.returncode if self.proc is not None else None
        return None if code is None else f"llama-server exited with code {code}"

    # -- stop ------------------------------------------------------------------------------
    async def stop(self, grace: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.proc is None or self.proc.returncode is not None:
            self.state = EngineState.STOPPED if self.state != EngineState.CRASHED else self.state
            return
        self.state = EngineState.STOPPING
        if self.pool:
            self.pool.close()
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            await self._kill()
        if self._watcher:
            await asyncio.shield(self._watcher)
        self.state = EngineState.STOPPED

    async def _kill(self) -> None:
        self._signal(signal.SIGKILL)
        await self.proc.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill_now(self) -> None:
        """Synchronous last resort at interpreter exit."""
        if self.proc is not None and self.proc.returncode is None:
            self._signal(signal.SIGKILL)

    # -- diagnostics -----------------------------------------------------------------------
    def log_tail(self, lines: int = 20) -> str:
        """The end of this start's output (the file keeps earlier runs after '=== ' lines)."""
        recent = tail_lines(self.log_path, max(lines, 200))
        starts = [i for i, line in enumerate(recent) if line.startswith("=== ")]
        if starts:
            recent = recent[starts[-1] + 1:]
        return "\n".join(recent[-lines:])
