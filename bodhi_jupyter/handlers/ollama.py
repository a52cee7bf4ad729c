"""The Ollama API under ``bodhi/api/``: thin HTTP over :mod:`..ollama` (the translation)
and the same pipeline as the OpenAI routes (gateway, context guard, supervisor, usage).
Errors are Ollama's ``{"error": "message"}`` with the status, which the ollama client
raises as ``ResponseError``."""

from __future__ import annotations

import asyncio
import json
import time

from tornado import web

from .. import __version__
from .. import ollama
from ..engine.process import EngineState
from ..engine.supervisor import SHARED
from ..errors import BodhiAPIError
from ..inference import PreparedRequest
from ..jsonbody import parse_json_object
from ..models.pulls import classify, validate_repo
from ..models.registry import ModelNotFound, ResolvedModel
from .base import BodhiHandler, domain_errors_as_http, requires
from .openai import InferenceHandler, _StreamAborted, check_model_allowed

NDJSON = "application/x-ndjson"


async def resolve(registry, name: str) -> ResolvedModel:
    """The model an Ollama name means (``name:latest`` is ``name`` too)."""
    for candidate in ollama.model_names(name):
        try:
            return await registry.resolve_fresh(candidate)
        except ModelNotFound:
            continue
    raise ModelNotFound(f"model '{name}' not found")


class OllamaMixin:
    """Ollama clients: a bad key is a 401, and every error is Ollama's shape."""

    api_key_clients = True

    def error_body(self, err: BodhiAPIError) -> dict:
        return err.ollama_body()

    def error_event(self, err: BodhiAPIError) -> bytes:
        return json.dumps(err.ollama_body()).encode() + b"\n"

    def json_body(self) -> dict:
        return parse_json_object(self.request.body)


class OllamaInference(OllamaMixin, InferenceHandler):
    """POST chat/generate/embed/embeddings: translate, then the OpenAI pipeline."""

    kind = ""

    def translate(self, body: dict) -> ollama.Translated:
        raise NotImplementedError

    @web.authenticated
    @requires("write")
    async def post(self):
        started = time.perf_counter()
        self.endpoint = f"ollama/{self.kind}"
        body = parse_json_object(self._body())
        t = self.translate(body)
        model = await resolve(self.bodhi.registry, t.body["model"])
        check_model_allowed(self.principal, model.id)
        t.body["model"] = model.id
        request = await self.bodhi.gateway.prepare(t.endpoint, json.dumps(t.body).encode())
        if not t.load_only:
            await self.bodhi.context_guard.check(request)
        self._t, self._name = t, body["model"]
        self._timing = ollama.Timing(started)
        await self._serve_counted(request, started)

    async def _serve(self, request: PreparedRequest) -> None:
        if self._t.unload:
            await self._unload(request.model)
            return
        if request.model.remote is not None or request.model.targets is not None:
            if self._t.load_only:  # nothing to load here: the upstream holds its models
                self._status = 200
                self.finish(ollama.load_reply(self._t, self._name, self._timing))
                return
            await super()._serve(request)  # an upstream or a router: no local engine
            return
        try:
            with domain_errors_as_http():
                leased = time.perf_counter()
                running = set(self.bodhi.supervisor.engines)
                async with self.lease_engine(request.model, request.embedding) as engine:
                    self._timing.load_s = time.perf_counter() - leased
                    if self._t.load_only:  # Ollama's "load it" (an empty prompt)
                        self.audit("engine.load", engine.id, model=request.model.id,
                                   embedding=request.embedding, owner=engine.owner,
                                   started=engine.id not in running, api="ollama")
                        self._status = 200
                        self.finish(ollama.load_reply(self._t, self._name, self._timing))
                        return
                    await self._forward(engine, request)
        except _StreamAborted:
            return

    async def _unload(self, model: ResolvedModel) -> None:
        """The caller's idle engines for the model go; one that is answering stays. A
        shared engine goes only for an admin."""
        supervisor = self.bodhi.supervisor
        mine = {self.owner, SHARED} if self.principal.can("admin") else {self.owner}
        for engine in list(supervisor.engines.values()):
            if (engine.owner in mine and engine.model.id == model.id
                    and engine.in_flight == 0):
                await supervisor.unload(engine)
                self.audit("engine.unload", engine.id, model=model.id,
                           embedding=engine.embedding, owner=engine.owner, api="ollama")
        self._status = 200
        self.finish(ollama.load_reply(self._t, self._name, self._timing))

    def _answer(self, resp, body: bytes) -> None:
        """The engine's OpenAI answer, in Ollama's shape."""
        answer = json.loads(body)
        out = ollama.reply(self._t, self._name, answer, self._timing)
        usage = answer.get("usage") or {}
        self._tokens = (int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0))
        self._status = 200
        self.finish(out)

    async def _relay_stream(self, resp) -> None:
        await self._relay_ndjson(resp)

    async def _relay_ndjson(self, resp) -> None:
        """Each engine event becomes an NDJSON line, written as it arrives."""
        send = self.start_event_stream(resp.close, content_type=NDJSON)
        translator = ollama.StreamTranslator(self._t, self._name, self._timing)

        def sink(piece: bytes):
            data = translator.feed(piece)
            return send(data) if data else None

        def finished():
            if not translator.done:
                send(translator.finish())
            return translator.counts

        await self._relay_through(resp, send, sink, finished)


class ChatHandler(OllamaInference):
    kind = "chat"

    def translate(self, body):
        return ollama.translate_chat(body)


class GenerateHandler(OllamaInference):
    kind = "generate"

    def translate(self, body):
        return ollama.translate_generate(body)


class EmbedHandler(OllamaInference):
    kind = "embed"

    def translate(self, body):
        return ollama.translate_embed(body)


class EmbeddingsHandler(OllamaInference):
    kind = "embeddings"

    def translate(self, body):
        return ollama.translate_embed(body, legacy=True)


class OllamaHandler(OllamaMixin, BodhiHandler):
    pass


class TagsHandler(OllamaHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        await self.bodhi.registry.rescan()
        models = [m for m in self.bodhi.registry.list_models()
                  if self.principal.may_use_model(m.id)]
        facts = await asyncio.to_thread(lambda: [ollama.model_facts(m.path) for m in models])
        self.finish({"models": [ollama.tag_entry(m.id, m.path, f)
                                for m, f in zip(models, facts)]})


class ShowHandler(OllamaHandler):
    @web.authenticated
    @requires("read")
    async def post(self):
        body = self.json_body()
        ollama.validate("OllamaShowRequest", body)
        model = await resolve(self.bodhi.registry, body.get("model") or body["name"])
        check_model_allowed(self.principal, model.id)
        facts = await asyncio.to_thread(ollama.model_facts, model.path)
        self.finish(ollama.show_reply(model.id, model.path, facts, model.request_defaults))


class PsHandler(OllamaHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        supervisor = self.bodhi.supervisor
        admin = self.principal.can("admin")
        engines = [e for e in supervisor.engines.values() if e.state == EngineState.READY
                   and (admin or e.owner in (self.owner, SHARED))
                   and self.principal.may_use_model(e.model.id)]
        facts = await asyncio.to_thread(
            lambda: [ollama.model_facts(e.model.path) for e in engines])
        out = []
        for e, f in zip(engines, facts):
            expires = None
            if supervisor.keep_alive >= 0 and e.in_flight == 0:
                expires = time.time() + max(
                    0.0, e.last_used + supervisor.keep_alive - time.monotonic())
            out.append(ollama.ps_entry(e.model.id, e.model.path, f, e.model.server.ctx_size,
                                       expires))
        self.finish({"models": out})


class VersionHandler(OllamaHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        self.finish({"version": __version__})


class PullHandler(OllamaHandler):
    """A pull from the Hugging Face hub (Ollama's ``hf.co/owner/repo:QUANT`` names) through
    the pull manager; Ollama's progress lines, or one ``{"status": "success"}``."""

    @web.authenticated
    @requires("admin")
    async def post(self):
        body = self.json_body()
        ollama.validate("OllamaPullRequest", body)
        target = ollama.pull_target(body.get("model") or body["name"])
        pulls = self.bodhi.pulls
        filename = target.filename
        with domain_errors_as_http():
            if filename is None:  # ask the hub for the files only of a valid repository id
                validate_repo(target.repo, param="model")
                files = await asyncio.to_thread(repo_files, pulls.endpoint, target.repo)
                filename = ollama.pick_gguf(files, target.quant)
            pull, created = await pulls.start(target.repo, filename)
        if created:
            self.audit("pull.start", pull.id, repo=pull.repo, filename=pull.filename,
                       revision=pull.revision, api="ollama")
        sent: dict = {}
        if body.get("stream") is False:
            pull = await pulls.wait(pull.id)
            lines = ollama.pull_lines(pull.public(), sent)
            if "error" in lines[-1]:
                raise BodhiAPIError(502, lines[-1]["error"], code="pull_failed")
            self.finish(lines[-1])
            return
        self.set_header("Content-Type", NDJSON)
        while True:
            pull = pulls.get(pull.id)
            lines = ollama.pull_lines(pull.public(), sent)
            if lines and not await self.send_event_bytes(
                    b"".join(json.dumps(line).encode() + b"\n" for line in lines)):
                return  # the client left; the pull goes on (see it in bodhi/app/models/pulls)
            if pull.state in ("done", "failed", "cancelled"):
                break
            await pulls.wait(pull.id, timeout=0.5)  # progress about twice a second
        web.RequestHandler.finish(self)


def repo_files(endpoint: str, repo: str) -> list[str]:
    """The repository's files (to pick one by quantization), as the pull manager's hub
    errors."""
    from huggingface_hub import HfApi

    try:
        return HfApi(endpoint=endpoint).list_repo_files(repo)
    except Exception as e:
        raise classify(e, endpoint) from None


default_handlers = [
    (r"bodhi/api/tags", TagsHandler),
    (r"bodhi/api/show", ShowHandler),
    (r"bodhi/api/ps", PsHandler),
    (r"bodhi/api/version", VersionHandler),
    (r"bodhi/api/chat", ChatHandler),
    (r"bodhi/api/generate", GenerateHandler),
    (r"bodhi/api/embed", EmbedHandler),
    (r"bodhi/api/embeddings", EmbeddingsHandler),
    (r"bodhi/api/pull", PullHandler),
]
