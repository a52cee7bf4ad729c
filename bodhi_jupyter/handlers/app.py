"""The app API under ``bodhi/app/``: server info, who am I, engine processes, run-time
settings, usage, and ``bodhi/metrics``. Thin HTTP over the supervisor, RuntimeSettings,
UsageQuery and BodhiMetrics."""

from __future__ import annotations

import asyncio
import shlex
import time
from datetime import datetime, timezone

import psutil
from tornado import web

from .. import __version__
from ..engine.process import EngineProcess, tail_lines
from ..engine.supervisor import SHARED
from ..errors import BodhiAPIError, invalid
from ..jsonbody import parse_json_object
from ..metrics import CONTENT_TYPE
from ..usage import UsageQuery, parse_group_by, parse_time
from .base import BodhiHandler, domain_errors_as_http, int_param, requires
from .openai import check_model_allowed

MAX_LOG_LINES = 5000


# -- plain helpers, usable without HTTP ------------------------------------------------------
def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def memory_bytes(pid: int | None) -> int | None:
    """Resident memory of the engine and any children it started."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def process_json(engine: EngineProcess) -> dict:
    # last_used is monotonic (immune to clock changes); shown as wall-clock time
    last_used = time.time() - (time.monotonic() - engine.last_used)
    return {
        "id": engine.id, "model": engine.model.id, "owner": engine.owner,
        "embedding": engine.embedding, "pid": engine.pid, "port": engine.port,
        "state": engine.state.value, "started_at": iso(engine.started_at),
        "last_used_at": iso(last_used), "in_flight": engine.in_flight,
        "memory_bytes": memory_bytes(engine.pid), "log_path": str(engine.log_path),
    }


class AppHandler(BodhiHandler):
    def engine(self, process_id: str) -> EngineProcess:
        """Someone else's process does not exist for a non-admin; shared ones are
        everyone's to see."""
        engine = self.bodhi.supervisor.engines.get(process_id)
        if engine is None or (engine.owner not in (self.principal.name, SHARED)
                              and not self.principal.can("admin")):
            raise BodhiAPIError(404, f"No such process: {process_id}",
                                code="process_not_found")
        return engine


# -- info and identity -----------------------------------------------------------------------
class InfoHandler(AppHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        bodhi = self.bodhi
        command, version = await asyncio.to_thread(bodhi.launcher.describe)
        loaded = bodhi.supervisor.ready_count
        self.finish({"version": __version__,
                     "engine": {"command": shlex.join(command), "version": version},
                     "status": "ok", "models_loaded": loaded,
                     "uptime_s": round(time.time() - bodhi.started_at, 3)})


class UserHandler(AppHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        p = self.principal
        token = None
        if p.is_token:
            token = {"id": p.token_id, "name": p.token_name,
                     "models": list(p.models) if p.models is not None else None}
        self.finish({"name": p.name, "role": p.role, "auth_method": p.auth_method,
                     "scope": p.scope, "token": token})


# -- processes -------------------------------------------------------------------------------
class ProcessesHandler(AppHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        owner = self.visible_owner(everyone_by_default=True)
        engines = [e for e in self.bodhi.supervisor.engines.values()
                   if owner is None or e.owner in (owner, SHARED)]
        engines.sort(key=lambda e: (e.owner, e.model.id, e.embedding, e.id))
        visible = engines[page.offset:page.offset + page.page_size]
        self.finish(page.body([process_json(e) for e in visible], len(engines)))

    @web.authenticated
    @requires("write")
    async def post(self):
        body = parse_json_object(self.request.body)
        name, embedding = body.get("model"), body.get("embedding", False)
        if not isinstance(name, str) or not name:
            raise invalid("'model' must be a non-empty string", param="model")
        if not isinstance(embedding, bool):
            raise invalid("'embedding' must be a boolean", param="embedding")
        model = await self.bodhi.registry.resolve_fresh(name)
        check_model_allowed(self.principal, model.id)
        if model.remote is not None or model.targets is not None:
            raise invalid(f"'{model.id}' is not a local model: there is no engine to load",
                          param="model")
        supervisor = self.bodhi.supervisor
        running = set(supervisor.engines)
        with domain_errors_as_http():
            engine = await supervisor.acquire(self.owner, model, embedding)
        supervisor.release(engine)  # from now on it idles under keep_alive like any other
        self.audit("engine.load", engine.id, model=model.id, embedding=embedding,
                   owner=engine.owner, started=engine.id not in running)
        self.set_status(201)
        self.finish(process_json(engine))


class ProcessHandler(AppHandler):
    @web.authenticated
    @requires("read")
    async def get(self, process_id: str):
        self.finish(process_json(self.engine(process_id)))

    @web.authenticated
    @requires("write")
    async def delete(self, process_id: str):
        engine = self.engine(process_id)
        if engine.owner == SHARED and not self.principal.can("admin"):
            raise BodhiAPIError(403, "Only an admin may unload an engine every user shares",
                                code="insufficient_scope")
        await self.bodhi.supervisor.unload(engine)
        self.audit("engine.unload", engine.id, model=engine.model.id,
                   embedding=engine.embedding, owner=engine.owner)
        self.set_status(204)
        self.finish()


class ProcessLogHandler(AppHandler):
    @web.authenticated
    @requires("read")
    async def get(self, process_id: str):
        lines = int_param(self.get_query_argument("lines", None), "lines", 100, 1,
                          MAX_LOG_LINES)
        engine = self.engine(process_id)
        text = await asyncio.to_thread(tail_lines, engine.log_path, lines)
        self.finish({"id": engine.id, "lines": text})


# -- settings --------------------------------------------------------------------------------
class SettingsHandler(AppHandler):
    @web.authenticated
    @requires("admin")
    async def get(self):
        page = self.page()
        self.finish(page.of([v.to_json() for v in self.bodhi.runtime_settings.list()]))


class SettingHandler(AppHandler):
    @web.authenticated
    @requires("admin")
    async def get(self, key: str):
        self.finish(self.bodhi.runtime_settings.get(key).to_json())

    @web.authenticated
    @requires("admin")
    async def put(self, key: str):
        body = parse_json_object(self.request.body)
        if "value" not in body:
            raise invalid("'value' is required", param="value", code="missing_required_field")
        settings = self.bodhi.runtime_settings
        previous = settings.get(key)
        view = settings.set(key, body["value"], by=self.principal.name)
        self.audit("setting.update", key, value=view.value, previous=previous.value,
                   previous_source=previous.source)
        self.finish(view.to_json())

    @web.authenticated
    @requires("admin")
    async def delete(self, key: str):
        settings = self.bodhi.runtime_settings
        previous = settings.get(key)
        view = settings.reset(key)
        self.audit("setting.reset", key, value=view.value, source=view.source,
                   previous=previous.value, previous_source=previous.source)
        self.finish(view.to_json())


# -- usage and metrics -----------------------------------------------------------------------
class UsageHandler(AppHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        group_by = parse_group_by(self.get_argument("group_by", None))
        since = parse_time(self.get_argument("since", None), "since")
        until = parse_time(self.get_argument("until", None), "until")
        owner = self.visible_owner()
        await self.bodhi.usage.flush()  # a caller sees their own requests at once
        rows, total = await asyncio.to_thread(
            UsageQuery(self.bodhi.database).aggregate, group_by,
            None if owner is None else [owner], since, until,
            page.offset, page.page_size)
        self.finish(page.body(rows, total))


class MetricsHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        self.set_header("Content-Type", CONTENT_TYPE)
        self.write(self.bodhi.metrics.exposition())
        web.RequestHandler.finish(self)  # APIHandler.finish() would force JSON


default_handlers = [
    (r"bodhi/app/info", InfoHandler),
    (r"bodhi/app/user", UserHandler),
    (r"bodhi/app/processes", ProcessesHandler),
    (r"bodhi/app/processes/([^/]+)", ProcessHandler),
    (r"bodhi/app/processes/([^/]+)/log", ProcessLogHandler),
    (r"bodhi/app/settings", SettingsHandler),
    (r"bodhi/app/settings/([^/]+)", SettingHandler),
    (r"bodhi/app/usage", UsageHandler),
    (r"bodhi/metrics", MetricsHandler),
]
