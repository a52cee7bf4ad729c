"""Keeps llama-server processes: start on demand, share, unload when idle, evict at the cap,
notice crashes and back off when they repeat, stop them all on shutdown."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..background import BackgroundTasks
from ..request_id import log_suffix
from ..models.registry import ResolvedModel
from .fair_queue import Abandoned, FairGate
from .launcher import LlamaServerLauncher, server_flags
from .process import EngineProcess, EngineStartError, EngineState, engine_key


class CapacityError(RuntimeError):
    """Every loaded engine is busy and the cap forbids another one (HTTP 503)."""


class ClientGone(RuntimeError):
    """The client left while its request waited for a slot (nothing was sent)."""


#: the owner of an engine every user shares (EngineSupervisor.share_engines)
SHARED = "*"


class EngineUnavailable(RuntimeError):
    """The engine failed to start or keeps crashing (HTTP 502)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Failures:
    count: int = 0
    last_at: float = 0.0
    cause: str = ""


class EngineSupervisor(LoggingConfigurable):
    """One llama-server per (owner, model configuration), or per model configuration when
    engines are shared; the policy lives here."""

    share_engines = Bool(
        False,
        help="One engine per model configuration, shared by every user (its owner shows as "
        "'*'; unloading it by hand needs admin), instead of one per user and model. Usage, "
        "quotas and fair admission stay per user. max_loaded_per_user does not apply to "
        "shared engines (see QuotaPolicy loaded_models). Takes effect for engines started "
        "after a restart.",
    ).tag(config=True)

    fair_admission = Bool(
        True,
        help="At most an engine's parallel slots (-np) of requests in flight at the engine; "
        "further requests wait here and each freed slot goes to the waiting user who holds "
        "the fewest (FIFO within a user), so one user's many streams cannot starve another "
        "user's single request. The wait is bounded by queue_timeout. False: every "
        "request goes straight to the engine, which queues them first come, first served.",
    ).tag(config=True, runtime=True)

    queue_timeout = Float(
        600.0, min=0,
        help="Seconds a request may wait for one of its engine's slots (fair_admission) "
        "before it gets 503. The engine itself would queue it without limit, so this is "
        "long: a notebook sending a batch of requests at once waits its turn, it is not "
        "refused.",
    ).tag(config=True, runtime=True)

    # runtime=True: may change while the server runs (bodhi/app/settings), see settings.py
    keep_alive = Int(
        300, min=-1,
        help="Seconds an engine stays loaded after its last response or stream ends; "
        "-1 keeps it until shutdown, 0 unloads it after every request.",
    ).tag(config=True, runtime=True)

    max_loaded = Int(
        3, min=0, help="Most engines loaded at once across all users; 0 for no limit."
    ).tag(config=True, runtime=True)

    max_loaded_per_user = Int(
        0, min=0, help="Most engines loaded at once for one user; 0 for no limit."
    ).tag(config=True, runtime=True)

    capacity_timeout = Float(
        30.0, min=0,
        help="Seconds a request waits for an engine to become free when the cap is reached "
        "and every engine is busy, before it gets 503.",
    ).tag(config=True, runtime=True)

    start_timeout = Float(
        180.0, help="Seconds an engine may take to answer GET /health with 200."
    ).tag(config=True)

    stop_grace = Float(
        5.0,
        help="Seconds between SIGTERM and SIGKILL when stopping an engine (llama-server can "
        "hang for ~30 s on SIGTERM with a stream open).",
    ).tag(config=True)

    crash_backoff = Float(
        1.0,
        help="After the second failure in a row (crash or failed start) of the same engine, "
        "wait this many seconds before starting it again, doubling with each further "
        "failure up to crash_backoff_max.",
    ).tag(config=True)

    crash_backoff_max = Float(
        60.0, help="Longest wait between restarts of an engine that keeps failing."
    ).tag(config=True)

    log_dir = Unicode(help="Directory for the engines' log files, one file per engine.").tag(
        config=True
    )

    @default("log_dir")
    def _default_log_dir(self):
        return str(Path(jupyter_data_dir()) / "bodhi" / "logs")

    def __init__(self, launcher: LlamaServerLauncher | None = None, **kwargs):
        super().__init__(**kwargs)
        self.launcher = launcher or LlamaServerLauncher(parent=self)
        self.engines: dict[str, EngineProcess] = {}
        self._starts: dict[str, asyncio.Future] = {}
        self._failures: dict[str, _Failures] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks = BackgroundTasks(self.log)
        self._changed: asyncio.Future | None = None  # resolved at the next change
        self._gates: dict[str, FairGate] = {}  # engine key -> admission; kept across restarts
        self._leases: dict[str, dict[str, int]] = {}  # user -> {engine key: leases held}
        self._closing = False
        self.starts_total = 0
        self.crashes_total = 0

    # -- ownership -------------------------------------------------------------------------
    def engine_owner(self, user: str) -> str:
        """Whose engines serve ``user``: their own, or the shared ones."""
        return SHARED if self.share_engines else user

    def key_for(self, user: str, model: ResolvedModel, embedding: bool = False) -> str:
        return engine_key(self.engine_owner(user), model, embedding)

    def engines_of(self, user: str) -> list[EngineProcess]:
        """Engines loaded (or starting) for ``user`` alone; none when engines are shared."""
        return [e for e in self.engines.values() if e.owner == user]

    def leased_keys(self, user: str) -> set[str]:
        """Engines ``user`` holds or waits for leases on right now."""
        return set(self._leases.get(user, ()))

    def slots(self, model: ResolvedModel) -> int:
        """Parallel slots of the engine for ``model`` (0: unknown, the engine chooses)."""
        flags = server_flags(model, self.launcher.extra_args)
        return max(0, flags[1]) if flags is not None else 0

    def gate(self, user: str, model: ResolvedModel, embedding: bool = False) -> FairGate | None:
        """The admission gate of the engine ``user`` would get (None until first used)."""
        return self._gates.get(self.key_for(user, model, embedding))

    # -- leasing ---------------------------------------------------------------------------
    @asynccontextmanager
    async def lease(self, owner: str, model: ResolvedModel, embedding: bool = False,
                    gone: asyncio.Event | None = None):
        """Hold an engine for one request or stream; idle time counts from the release.

        ``owner`` is the user asking. With ``fair_admission`` the request first waits for
        one of the engine's slots (fairly across users); setting ``gone`` while it waits
        gives its place up (ClientGone). A stream holds its slot until it ends."""
        key = self.key_for(owner, model, embedding)
        held = self._leases.setdefault(owner, {})
        held[key] = held.get(key, 0) + 1
        gate = None
        try:
            if self.fair_admission:
                gate = await self._admit(key, owner, model,
                                         time.monotonic() + self.queue_timeout, gone)
            engine = await self.acquire(owner, model, embedding,
                                        deadline=time.monotonic() + self.capacity_timeout)
            ok = False
            try:
                yield engine
                ok = True
            finally:
                self.release(engine, ok)
        finally:
            if gate is not None:
                gate.release(owner)
                if gate.idle and self._gates.get(key) is gate:
                    del self._gates[key]
            held[key] -= 1
            if not held[key]:
                del held[key]
                if not held:
                    self._leases.pop(owner, None)

    async def _admit(self, key: str, user: str, model: ResolvedModel, deadline: float,
                     gone: asyncio.Event | None) -> FairGate:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = FairGate(self.slots(model))
        try:
            await gate.acquire(user, max(0.0, deadline - time.monotonic()), gone)
        except asyncio.TimeoutError:
            if gate.idle and self._gates.get(key) is gate:
                del self._gates[key]
            raise CapacityError(
                f"All {gate.slots} slots of the engine for '{model.id}' are busy and "
                f"{gate.waiting} other request(s) wait; waited {self.queue_timeout:g} s "
                "(EngineSupervisor.queue_timeout). Retry later.") from None
        except Abandoned:
            if gate.idle and self._gates.get(key) is gate:
                del self._gates[key]
            raise ClientGone(f"the client left while waiting for '{model.id}'") from None
        return gate

    async def acquire(self, owner: str, model: ResolvedModel,
                      embedding: bool = False, deadline: float | None = None) -> EngineProcess:
        """The engine for ``owner``'s requests to ``model``, started if need be, counted
        in flight until ``release``; no admission gate (``lease`` adds it)."""
        if self._closing:
            raise EngineUnavailable("the server is shutting down")
        owner = self.engine_owner(owner)
        key = engine_key(owner, model, embedding)
        if deadline is None:
            deadline = time.monotonic() + self.capacity_timeout
        while True:
            engine = self.engines.get(key)
            if engine is not None and engine.state == EngineState.READY:
                engine.in_flight += 1
                self._cancel_timer(key)
                return engine
            if key in self._starts:
                await asyncio.shield(self._starts[key])
                continue
            self._check_backoff(key, model)
            if not self._has_room(owner):
                victim = self._least_recently_used_idle(owner)
                if victim is not None:
                    self.log.info("bodhi: unloading %s (%s) to make room", victim.model.id,
                                  victim.owner)
                    await self.unload(victim)
                    continue
                if not await self._wait_for_change(deadline):
                    raise CapacityError(
                        f"All {self._loaded_count()} loaded models are busy and the limit of "
                        f"loaded models is reached; tried for {self.capacity_timeout:g} s. "
                        "Retry later or raise EngineSupervisor.max_loaded.")
                continue
            return await self._start(key, owner, model, embedding)

    def release(self, engine: EngineProcess, ok: bool = True) -> None:
        engine.in_flight = max(0, engine.in_flight - 1)
        engine.last_used = time.monotonic()
        if ok and engine.state == EngineState.READY:
            self._failures.pop(engine.id, None)
        if engine.in_flight == 0 and engine.state == EngineState.READY:
            self._schedule_idle_unload(engine)
        self._notify()

    # -- starting --------------------------------------------------------------------------
    async def _start(self, key: str, owner: str, model: ResolvedModel,
                     embedding: bool) -> EngineProcess:
        engine = EngineProcess(owner, model, embedding, self.launcher, Path(self.log_dir),
                               on_exit=self._on_exit, log=self.log)
        engine.in_flight = 1  # reserved for this request, so nobody evicts it meanwhile
        self.engines[key] = engine
        started = asyncio.get_running_loop().create_future()
        self._starts[key] = started
        self.starts_total += 1
        self.log.info("bodhi: starting llama-server for %s (owner %s)%s", model.id, owner,
                      log_suffix())
        try:
            await engine.start(self.start_timeout)
        except EngineStartError as e:
            self.engines.pop(key, None)
            self._record_failure(key, e.summary)
            self.log.error("bodhi: %s%s", e, log_suffix())
            started.set_exception(EngineUnavailable(str(e)))
            started.exception()  # waiters re-raise it; keep asyncio from warning
            raise EngineUnavailable(str(e)) from None
        except BaseException as e:
            self.engines.pop(key, None)
            started.set_exception(EngineUnavailable(f"start of {model.id} aborted: {e!r}"))
            started.exception()
            raise
        finally:
            self._starts.pop(key, None)
            self._notify()
        self.log.info("bodhi: %s ready on port %s (pid %s)", model.id, engine.port, engine.pid)
        started.set_result(engine)
        return engine

    def _backoff_remaining(self, key: str) -> float:
        failure = self._failures.get(key)
        if failure is None or failure.count < 2:
            return 0.0
        wait = min(self.crash_backoff * 2 ** (failure.count - 2), self.crash_backoff_max)
        return max(0.0, failure.last_at + wait - time.monotonic())

    def next_start_in(self, owner: str, model: ResolvedModel, embedding: bool = False) -> float:
        """Seconds until a failing engine may be started again (0: now)."""
        return self._backoff_remaining(self.key_for(owner, model, embedding))

    def _check_backoff(self, key: str, model: ResolvedModel) -> None:
        remaining = self._backoff_remaining(key)
        if remaining > 0:
            failure = self._failures[key]
            raise EngineUnavailable(
                f"The engine for '{model.id}' failed {failure.count} times in a row "
                f"(last: {failure.cause}); next start allowed in {remaining:.1f} s",
                retry_after=remaining)

    def _record_failure(self, key: str, cause: str) -> None:
        failure = self._failures.setdefault(key, _Failures())
        failure.count += 1
        failure.last_at = time.monotonic()
        failure.cause = cause

    def failure_count(self, owner: str, model: ResolvedModel, embedding: bool = False) -> int:
        failure = self._failures.get(self.key_for(owner, model, embedding))
        return failure.count if failure else 0

    def _on_exit(self, engine: EngineProcess) -> None:
        self._cancel_timer(engine.id)
        if self.engines.get(engine.id) is engine:
            del self.engines[engine.id]
        if engine.state == EngineState.CRASHED:
            self.crashes_total += 1
            cause = engine.exit_cause
            self._record_failure(engine.id, cause)
            self.log.error("bodhi: engine for %s crashed (%s); %d request(s) in flight. "
                           "Log tail:\n%s", engine.model.id, cause, engine.in_flight,
                           engine.log_tail())
        self._notify()

    # -- unloading -------------------------------------------------------------------------
    def _schedule_idle_unload(self, engine: EngineProcess) -> None:
        self._cancel_timer(engine.id)
        if self.keep_alive < 0 or self._closing:
            return
        loop = asyncio.get_running_loop()
        self._timers[engine.id] = loop.call_later(
            max(self.keep_alive, 0),
            lambda: self._tasks.spawn(self._idle_unload(engine), f"unload {engine.id}"))

    async def _idle_unload(self, engine: EngineProcess) -> None:
        self._timers.pop(engine.id, None)
        if engine.in_flight == 0 and engine.state == EngineState.READY:
            self.log.info("bodhi: unloading idle %s", engine.model.id)
            await self.unload(engine)

    async def unload(self, engine: EngineProcess) -> None:
        self._cancel_timer(engine.id)
        if self.engines.get(engine.id) is engine:
            del self.engines[engine.id]
        await engine.stop(self.stop_grace)
        self._notify()

    def _cancel_timer(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def shutdown(self) -> None:
        """Stop every engine; called when the Jupyter server stops."""
        self._closing = True
        for key in list(self._timers):
            self._cancel_timer(key)
        await self._tasks.cancel_all()
        engines = list(self.engines.values())
        self.engines.clear()
        await asyncio.gather(*(e.stop(self.stop_grace) for e in engines),
                             return_exceptions=True)

    def kill_all(self) -> None:
        """Synchronous last resort at interpreter exit (the app registers it)."""
        for engine in list(self.engines.values()):
            engine.kill_now()

    # -- capacity --------------------------------------------------------------------------
    @property
    def ready_count(self) -> int:
        """Engines loaded and answering (not those still starting)."""
        return sum(1 for e in list(self.engines.values()) if e.state == EngineState.READY)

    def _loaded_count(self, owner: str | None = None) -> int:
        return sum(1 for e in self.engines.values() if owner is None or e.owner == owner)

    def _has_room(self, owner: str) -> bool:
        if self.max_loaded and self._loaded_count() >= self.max_loaded:
            return False
        if (self.max_loaded_per_user and owner != SHARED
                and self._loaded_count(owner) >= self.max_loaded_per_user):
            return False
        return True

    def _least_recently_used_idle(self, owner: str) -> EngineProcess | None:
        user_bound = not (self.max_loaded and self._loaded_count() >= self.max_loaded)
        idle = [e for e in self.engines.values()
                if e.state == EngineState.READY and e.in_flight == 0
                and (not user_bound or e.owner == owner)]
        return min(idle, key=lambda e: e.last_used, default=None)

    async def _wait_for_change(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._changed), remaining)
        except asyncio.TimeoutError:
            return False
        return True

    def _notify(self) -> None:
        """Wake requests waiting for capacity; free when nobody waits (the common case)."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)
