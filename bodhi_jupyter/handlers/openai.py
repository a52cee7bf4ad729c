"""OpenAI-compatible endpoints under ``bodhi/v1/``: thin HTTP over the gateway and the
supervisor. Response bodies from the engine are forwarded byte for byte."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import asynccontextmanager

from tornado import web

from .. import infill
from ..auth.quotas import QuotaExceeded
from ..engine.process import EngineFailed
from ..engine.supervisor import ClientGone
from ..engine.upstream import ChunkedParser, UpstreamError, UpstreamResponse
from ..errors import BodhiAPIError, as_http
from ..inference import PreparedRequest
from ..models.capabilities import model_fields
from ..models.registry import InvalidAlias, ModelNotFound, ResolvedModel
from ..service_forwarding import SERVICE_UPSTREAM
from ..usage import (CLIENT_GONE, UsageEntry, counts_from_anthropic_stream, counts_from_body,
                     counts_from_stream_tail)
from .base import BodhiHandler, domain_errors_as_http, requires
from .stream_writer import StreamWriter


def model_object(model: ResolvedModel, created: int) -> dict:
    """OpenAI's model object, plus what the file says (source, architecture, capabilities
    ...: clients ignore fields they do not know)."""
    owner = model.remote.upstream if model.remote is not None else "bodhi"
    return {"id": model.id, "object": "model", "created": created, "owned_by": owner,
            **model_fields(model)}


class OpenAIHandler(BodhiHandler):
    """Endpoints for OpenAI clients: a bad or missing key is their 401, not Jupyter's 403."""

    api_key_clients = True


class ModelListHandler(OpenAIHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        created = int(self.bodhi.started_at)
        await self.bodhi.registry.rescan()  # throttled: new downloads show within seconds
        await self.bodhi.upstreams.refresh_stale()  # remote lists: bounded by list_wait
        models = [m for m in self.bodhi.registry.list_models()
                  if self.principal.may_use_model(m.id)]
        self.finish({"object": "list", "data": [model_object(m, created) for m in models]})


class ModelHandler(OpenAIHandler):
    @web.authenticated
    @requires("read")
    async def get(self, model_id: str):
        model = await self.bodhi.registry.resolve_fresh(model_id)
        check_model_allowed(self.principal, model.id)
        self.finish(model_object(model, int(self.bodhi.started_at)))


def check_model_allowed(principal, model_id: str) -> None:
    if not principal.may_use_model(model_id):
        raise BodhiAPIError(403, f"This API token may not use the model '{model_id}'",
                            code="model_not_allowed", param="model")


#: how llama-server words a 500 that is really about the request (measured: tools that are
#: not an array, a text part without text, a non-string name, images for a text-only
#: model): "Failed to parse tools: Expected 'tools' to be an array...", "Failed to parse
#: messages: [json.exception.type_error.302] type must be string...", "image input is not
#: supported - hint: ... provide the mmproj"
_REQUEST_FAULT = re.compile(r"^failed to parse |\[json\.exception\.|^(image|audio) input is "
                            r"not supported|^invalid (argument|request|tool|message)", re.I)


def is_request_fault(message: str) -> bool:
    """Whether an engine's 500 describes a bad request rather than a failing engine."""
    return bool(_REQUEST_FAULT.search(message or ""))


def upstream_error(resp: UpstreamResponse, body: bytes, model_id: str,
                   remote=None) -> BodhiAPIError:
    """Pass an engine's 4xx through with its message, and a 500 that describes the
    request as the 400 it is (so clients do not retry it); anything else is an engine
    failure. A remote upstream refusing its key (401/403) is a 502 too: the caller's own
    credentials were fine, the configured key is not."""
    try:
        err = json.loads(body).get("error", {})
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        err, message = {}, None
    message = message or body.decode("utf-8", "replace")[:500] or resp.reason
    if 400 <= resp.status < 500 and resp.status not in (401, 403):
        code = err.get("code") if isinstance(err, dict) else None
        return BodhiAPIError(resp.status, message,
                             code=code if isinstance(code, str) else "upstream_error",
                             type=err.get("type") if isinstance(err, dict) else None)
    if resp.status == 500 and is_request_fault(message):
        return BodhiAPIError(400, message, code="invalid_request")
    if remote is not None:
        refused = resp.status in (401, 403)
        what = "refused its API key" if refused else "failed"
        return BodhiAPIError(502, f"The upstream '{remote.upstream}' {what} ({resp.status}): "
                             f"{message}",
                             code="upstream_auth_failed" if refused else "upstream_error")
    return BodhiAPIError(502, f"The engine for '{model_id}' failed ({resp.status}): {message}",
                         code="engine_error")


def drain_limit(cap: int) -> int:
    """Bodies up to this size are read to the end (and dropped past ``cap``) so the client
    gets its 413; reading 64 MiB over loopback costs the event loop tens of milliseconds."""
    return max(4 * cap, 64 * 1024 * 1024)


@web.stream_request_body
class InferenceHandler(OpenAIHandler):
    """POST an OpenAI request: validate, lease an engine, forward, relay the reply.

    The body is streamed in so that no more than ``BodhiApp.max_body_size`` is ever held:
    past the cap the rest is read and dropped, then 413 is answered (a client still sending
    when the server hangs up sees a broken connection, not the 413). A declared length too
    large even to drain is refused at once."""

    endpoint = ""

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self._upstream: UpstreamResponse | None = None
        self._status = 500  # what usage and metrics record, unless the request says more
        self._tokens = (0, 0)
        self._body_parts: list[bytes] | None = []
        self._body_size = 0
        self._target: str | None = None  # the router target serving: X-Bodhi-Target
        self._gone = asyncio.Event()  # set when the client leaves: gives a queued place up

    def set_default_headers(self) -> None:
        super().set_default_headers()  # runs again when an error clears the headers
        target = getattr(self, "_target", None)
        if target is not None:
            self.set_header("X-Bodhi-Target", target)

    async def prepare(self):
        await super().prepare()
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > drain_limit(self.bodhi.max_body_size):
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_parts is not None:
            if self._body_size > self.bodhi.max_body_size:
                self._body_parts = None  # keep reading, but hold nothing
            else:
                self._body_parts.append(chunk)

    def _too_large(self) -> BodhiAPIError:
        cap = self.bodhi.max_body_size
        return BodhiAPIError(413, f"The request body is larger than this server accepts "
                             f"({cap} bytes; BodhiApp.max_body_size)",
                             code="request_too_large")

    def _body(self) -> bytes:
        parts = self._body_parts
        if parts is None:
            raise self._too_large()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def on_connection_close(self):
        # the client left: dropping the engine connection makes llama-server stop generating
        if self._upstream is not None:
            self._upstream.close()
        self._gone.set()
        super().on_connection_close()

    @web.authenticated
    @requires("write")
    async def post(self):
        started = time.perf_counter()
        self.request.body = body = self._body()
        request = await self.bodhi.gateway.prepare(self.endpoint, body)
        check_model_allowed(self.principal, request.model.id)
        await self.bodhi.context_guard.check(request)  # hopeless prompts never reach it
        # from here on every outcome is counted; rejected requests above write nothing
        await self._serve_counted(request, started)

    async def _serve_counted(self, request: PreparedRequest, started: float) -> None:
        """Serve, and record usage and metrics whatever the outcome (a request over a
        quota is refused before: it records nothing)."""
        quotas = self.bodhi.quotas
        try:
            await quotas.admit(self.principal)
        except QuotaExceeded as e:
            self.quota_refused(e)
            raise
        try:
            await self._serve(request)
        except ClientGone:
            self._status = CLIENT_GONE  # left while waiting for a slot
        except BodhiAPIError as e:
            self._status = e.status
            raise
        finally:
            try:
                self._record(request, started)
            finally:
                quotas.leave(self.principal)

    @asynccontextmanager
    async def lease_engine(self, model: ResolvedModel, embedding: bool):
        """The caller's engine for ``model``: the loaded-models quota, then a lease that
        waits its turn for a slot (given up if the client leaves meanwhile)."""
        supervisor = self.bodhi.supervisor
        try:
            await self.bodhi.quotas.check_loaded(self.principal, supervisor, model, embedding)
        except QuotaExceeded as e:
            self.quota_refused(e)
            raise
        async with supervisor.lease(self.owner, model, embedding, gone=self._gone) as engine:
            yield engine

    def quota_refused(self, err: QuotaExceeded) -> None:
        """Log a refusal, and put it in the audit log."""
        self.log.info("bodhi: %s over the %s quota (%s)", self.principal.name, err.quota,
                      err.limit)
        self.audit("quota.refused", quota=err.quota, limit=err.limit)

    def _record(self, request: PreparedRequest, started: float) -> None:
        p = self.principal
        entry = UsageEntry(user=p.name, token_id=p.token_id, model=request.model.id,
                           endpoint=self.endpoint, stream=request.stream, status=self._status,
                           duration_ms=(time.perf_counter() - started) * 1000,
                           prompt_tokens=self._tokens[0], completion_tokens=self._tokens[1],
                           notebook=p.notebook, groups=p.groups)
        self.bodhi.usage.record(entry)  # queued; written in batches off the event loop
        self.bodhi.quotas.spent(p.name, entry.prompt_tokens + entry.completion_tokens,
                                entry.at)
        self.bodhi.metrics.observe(entry)

    async def _serve(self, request: PreparedRequest) -> None:
        try:
            with domain_errors_as_http():
                if request.model.targets is not None:
                    await self._route(request)
                else:
                    await self._serve_one(request)
        except _StreamAborted:
            return  # the client already has the error event

    async def _route(self, request: PreparedRequest) -> None:
        """A router alias: try its targets in order. A connection error, a failed engine
        start or a 5xx before any byte reached the client moves on; a 4xx is the answer."""
        router, failures = request.model, []
        registry, gateway = self.bodhi.registry, self.bodhi.gateway
        for name in router.targets:
            self._target = name
            self.set_header("X-Bodhi-Target", name)
            try:
                model = await registry.resolve_target(router, name)
            except (ModelNotFound, InvalidAlias) as e:  # unknown target, or a nested router
                failures.append(f"{name}: {e}")
            else:
                try:
                    with domain_errors_as_http():
                        sub = await gateway.for_model(request.endpoint, request.body, model)
                        await self._serve_one(sub)
                    return
                except BodhiAPIError as e:
                    if e.status < 500 or self._headers_written:
                        raise
                    failures.append(f"{name}: {e.message.splitlines()[0][:200]}")
            self.log.warning("bodhi: router %s: target %s failed, trying the next: %s",
                             router.id, name, failures[-1])
        raise BodhiAPIError(502, f"No target of the router '{router.id}' could answer: "
                            + "; ".join(failures), code="all_targets_failed")

    async def _serve_one(self, request: PreparedRequest) -> None:
        """Forward to the model's engine, or to its upstream for a remote model."""
        model = request.model
        if model.remote is not None:
            forwarding = self.bodhi.forwarding
            if forwarding is not None and model.remote.upstream == SERVICE_UPSTREAM:
                forwarding.check_caller(self.principal)
            await self._forward(self.bodhi.upstreams.forwarder(model.remote), request)
            return
        async with self.lease_engine(model, request.embedding) as engine:
            await self._forward(engine, request)

    async def _open(self, engine, request: PreparedRequest) -> UpstreamResponse:
        """Send the request to the engine; the response's body is not read yet."""
        return await engine.forward(request.upstream_path, request.payload)

    async def _forward(self, engine, request: PreparedRequest) -> None:
        resp = await self._open(engine, request)
        self._upstream = resp
        try:
            if request.stream and resp.status == 200:
                await self._relay_stream(resp)
                return
            try:
                body = await resp.read()
            except UpstreamError:
                self._status = CLIENT_GONE
                return  # the client left and we hung up on the engine: nothing to say
            if resp.status >= 400:
                raise upstream_error(resp, body, request.model.id, request.model.remote)
            self._answer(resp, body)
        finally:
            self._upstream = None
            resp.close()

    def _answer(self, resp: UpstreamResponse, body: bytes) -> None:
        """A whole (non-streamed) successful answer, to the client."""
        self.set_header("Content-Type", resp.content_type or "application/json")
        self._status = resp.status
        self.write(body)  # bytes: forwarded untouched
        self._finish_raw()
        self._tokens = counts_from_body(body)  # for the usage record, once the client has it

    async def _relay_stream(self, resp: UpstreamResponse) -> None:
        """Each piece the engine sends is written to the client as it is read, by a relay
        thread or in the engine socket's read callback (:class:`StreamWriter`), without
        awaiting a flush that has nothing left to wait for."""
        write = self.start_event_stream(resp.close)  # hanging up stops generation
        tail = [b"", b"", b""]  # the token counts come in the last events
        head: list[bytes] = []  # ... and, for Anthropic's, in the first

        framed = []  # set once the engine's chunks go out framing and all

        def sink(piece: bytes):
            piece = self.stream_piece(piece)
            if not piece:
                return None
            tail[0], tail[1], tail[2] = tail[1], tail[2], piece
            if not head:
                head.append(piece)
            return write(piece)

        def framed_sink(frame: bytes) -> None:  # the first on the loop, then on a thread
            if not framed:
                framed.append(True)
            tail[0], tail[1], tail[2] = tail[1], tail[2], frame
            if not head:
                head.append(frame)
            write.send_framed(frame)

        def finished() -> tuple[int, int]:
            if framed:
                return self.stream_counts([ChunkedParser.payloads(p) for p in head],
                                          [ChunkedParser.payloads(p) for p in tail])
            return self.stream_counts(head, tail)

        await self._relay_through(resp, write, sink, finished,
                                  framed_sink if self.passes_stream_through else None)

    async def _relay_through(self, resp: UpstreamResponse, write: StreamWriter, sink,
                             finished, framed_sink=None) -> None:
        """Relay the engine's stream through ``sink``, which writes with ``write``;
        ``finished()`` ends it and gives the token counts. An event stream from a local
        engine is relayed by a relay thread where the client's connection allows (the
        sink then runs on that thread; ``framed_sink``, if given, instead: the engine's
        chunks go to the client as the engine framed them); the outcomes are the same for
        every stream format and either way: the client left (499), or the engine failed
        mid-stream (an error event, 502)."""
        connection = self.request.connection
        try:
            threaded = resp.relays_in_thread and write.for_thread()
            try:
                if threaded and framed_sink is not None:
                    await resp.relay(framed_sink, in_thread=True, framed=True)
                else:
                    await resp.relay(sink, in_thread=threaded)
            finally:
                write.back_to_loop()
            self._status = 200
            self._tokens = finished()
        except UpstreamError:  # only our own hang-up when the client left
            self._status = CLIENT_GONE
        except EngineFailed as e:
            self._status = 502
            if not connection.stream.closed():
                await self.send_event_bytes(self.error_event(as_http(e)))
            raise _StreamAborted() from None
        finally:
            if not self._finished and not connection.stream.closed():
                self._finish_raw()

    def stream_piece(self, piece: bytes) -> bytes:
        """What of an engine's stream piece goes to the client (all of it, here)."""
        return piece

    @property
    def passes_stream_through(self) -> bool:
        """Whether ``stream_piece`` leaves every piece as it is (the chunks may then go
        to the client with the engine's own framing)."""
        return True

    def stream_counts(self, head: list[bytes], tail) -> tuple[int, int]:
        """(prompt, completion) tokens of a finished stream."""
        return counts_from_stream_tail(tail)

    def _finish_raw(self) -> None:
        # APIHandler.finish() would force application/json onto event streams
        web.RequestHandler.finish(self)


class _StreamAborted(Exception):
    """The engine died mid-stream; the client already got an error event."""


class ChatCompletionsHandler(InferenceHandler):
    endpoint = "chat"


class CompletionsHandler(InferenceHandler):
    endpoint = "completions"


class EmbeddingsHandler(InferenceHandler):
    endpoint = "embeddings"


class ResponsesHandler(InferenceHandler):
    """The OpenAI Responses API, as llama-server serves it (stateless: no stored
    responses, so ``previous_response_id`` is the engine's to refuse)."""

    endpoint = "responses"


class InfillHandler(InferenceHandler):
    """llama-server's /infill, for ghost text in cells: answers say which ``mode`` served
    them, and a model the engine finds without FIM tokens is asked again as a plain
    completion prompt (:mod:`..infill`)."""

    endpoint = "infill"

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self._mode = infill.INFILL
        self._tagger: infill.ModeTagger | None = None

    async def _open(self, engine, request: PreparedRequest) -> UpstreamResponse:
        resp = await engine.forward(request.upstream_path, request.payload)
        if request.model.remote is not None:  # the hub's bodhi service: its answer has it all
            self._mode = resp.headers.get("x-bodhi-infill-mode", infill.INFILL)
            self.set_header("X-Bodhi-Infill-Mode", self._mode)
            return resp
        if request.mode == infill.INFILL and resp.status == 501:
            try:
                body = await resp.read()
            finally:
                resp.close()
            if not infill.is_not_supported(resp.status, body):
                raise upstream_error(resp, body, request.model.id, request.model.remote)
            request = infill.as_completion(request)
            await self.bodhi.context_guard.check(request)
            resp = await engine.forward(request.upstream_path, request.payload)
        self._mode = request.mode or infill.INFILL
        self._tagger = infill.ModeTagger(self._mode)
        self.set_header("X-Bodhi-Infill-Mode", self._mode)
        return resp

    def _answer(self, resp: UpstreamResponse, body: bytes) -> None:
        if self._tagger is None:  # forwarded to the hub's service, which tagged it
            return super()._answer(resp, body)
        super()._answer(resp, infill.with_mode(body, self._mode))

    def stream_piece(self, piece: bytes) -> bytes:
        return self._tagger(piece) if self._tagger is not None else piece

    @property
    def passes_stream_through(self) -> bool:
        return self._tagger is None


class AnthropicHandler(InferenceHandler):
    """Anthropic's Messages API: its error shape, and its stream's token counts."""

    def error_body(self, err: BodhiAPIError) -> dict:
        return err.anthropic_body()

    def error_event(self, err: BodhiAPIError) -> bytes:
        return b"event: error\ndata: " + json.dumps(self.error_body(err)).encode() + b"\n\n"

    def stream_counts(self, head: list[bytes], tail) -> tuple[int, int]:
        return counts_from_anthropic_stream(head, tail)


class MessagesHandler(AnthropicHandler):
    endpoint = "messages"


class CountTokensHandler(AnthropicHandler):
    endpoint = "count_tokens"


default_handlers = [
    (r"bodhi/v1/models", ModelListHandler),
    (r"bodhi/v1/models/(.+)", ModelHandler),
    (r"bodhi/v1/chat/completions", ChatCompletionsHandler),
    (r"bodhi/v1/completions", CompletionsHandler),
    (r"bodhi/v1/embeddings", EmbeddingsHandler),
    (r"bodhi/v1/responses", ResponsesHandler),
    (r"bodhi/v1/messages", MessagesHandler),
    (r"bodhi/v1/messages/count_tokens", CountTokensHandler),
    (r"bodhi/v1/infill", InfillHandler),
]
