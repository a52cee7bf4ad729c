"""OpenAI-compatible endpoints under ``bodhi/v1/``: thin HTTP over the gateway and the
supervisor. Response bodies from the engine are forwarded byte for byte."""

from __future__ import annotations

import json
import time

from tornado import web

from ..engine.process import EngineFailed
from ..engine.upstream import UpstreamError, UpstreamResponse
from ..errors import BodhiAPIError
from ..inference import PreparedRequest
from ..models.registry import ModelNotFound, ResolvedModel
from ..usage import UsageEntry, counts_from_body, counts_from_stream_tail
from .base import BodhiHandler, engine_errors_as_http, engine_failure_as_http, requires


def model_object(model: ResolvedModel, created: int) -> dict:
    return {"id": model.id, "object": "model", "created": created, "owned_by": "bodhi"}


class ModelListHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        created = int(self.bodhi.started_at)
        models = [m for m in self.bodhi.registry.list_models()
                  if self.principal.may_use_model(m.id)]
        self.finish({"object": "list", "data": [model_object(m, created) for m in models]})


class ModelHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self, model_id: str):
        try:
            model = self.bodhi.registry.resolve(model_id)
        except ModelNotFound as e:
            raise BodhiAPIError(404, str(e), code="model_not_found", param="model") from None
        check_model_allowed(self.principal, model.id)
        self.finish(model_object(model, int(self.bodhi.started_at)))


def check_model_allowed(principal, model_id: str) -> None:
    if not principal.may_use_model(model_id):
        raise BodhiAPIError(403, f"This API token may not use the model '{model_id}'",
                            code="model_not_allowed", param="model")


def upstream_error(resp: UpstreamResponse, body: bytes, model_id: str) -> BodhiAPIError:
    """Pass an engine's 4xx through with its message; anything else is an engine failure."""
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
    return BodhiAPIError(502, f"The engine for '{model_id}' failed ({resp.status}): {message}",
                         code="engine_error")


class InferenceHandler(BodhiHandler):
    """POST an OpenAI request: validate, lease an engine, forward, relay the reply."""

    endpoint = ""

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self._upstream: UpstreamResponse | None = None
        self._status = 500  # what usage and metrics record, unless the request says more
        self._tokens = (0, 0)

    def on_connection_close(self):
        # the client left: dropping the engine connection makes llama-server stop generating
        if self._upstream is not None:
            self._upstream.close()
        super().on_connection_close()

    @web.authenticated
    @requires("write")
    async def post(self):
        started = time.perf_counter()
        request = self.bodhi.gateway.prepare(self.endpoint, self.request.body)
        check_model_allowed(self.principal, request.model.id)
        # from here on every outcome is counted; rejected requests above write nothing
        try:
            await self._serve(request)
        except BodhiAPIError as e:
            self._status = e.status
            raise
        finally:
            self._record(request, started)

    def _record(self, request: PreparedRequest, started: float) -> None:
        p = self.principal
        entry = UsageEntry(user=p.name, token_id=p.token_id, model=request.model.id,
                           endpoint=self.endpoint, stream=request.stream, status=self._status,
                           duration_ms=(time.perf_counter() - started) * 1000,
                           prompt_tokens=self._tokens[0], completion_tokens=self._tokens[1])
        self.bodhi.usage.record(entry)  # queued; written in batches off the event loop
        self.bodhi.metrics.observe(entry)

    async def _serve(self, request: PreparedRequest) -> None:
        try:
            with engine_errors_as_http():
                async with self.bodhi.supervisor.lease(self.owner, request.model,
                                                       request.embedding) as engine:
                    await self._forward(engine, request)
        except _StreamAborted:
            return  # the client already has the error event

    async def _forward(self, engine, request: PreparedRequest) -> None:
        resp = await engine.forward(request.upstream_path, request.payload)
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
                raise upstream_error(resp, body, request.model.id)
            self.set_header("Content-Type", resp.content_type or "application/json")
            self._tokens = counts_from_body(body)
            self._status = resp.status
            self.write(body)  # bytes: forwarded untouched
            self._finish_raw()
        finally:
            self._upstream = None
            resp.close()

    async def _relay_stream(self, resp: UpstreamResponse) -> None:
        """Each piece the engine sends is written to the client from the engine socket's
        read callback: the first with the headers, the rest straight to the connection,
        without awaiting a flush that has nothing left to wait for."""
        self.start_event_stream()
        connection = self.request.connection
        tail = [b"", b"", b""]  # the token counts come in the last events

        def sink(piece: bytes):
            tail[0], tail[1], tail[2] = tail[1], tail[2], piece
            if tail[1]:
                sent = connection.write(piece)
            else:  # the first piece: with the headers, as RequestHandler writes them
                self.write(piece)
                sent = self.flush()
            if sent.done() and sent.exception() is not None:
                resp.close()  # the client has gone: hanging up stops generation
            return sent

        try:
            await resp.relay(sink)
            self._status = 200
            self._tokens = counts_from_stream_tail(tail)
        except UpstreamError:
            self._status = CLIENT_GONE
        except EngineFailed as e:
            self._status = 502
            if not connection.stream.closed():
                await self.send_event_bytes(self.error_event(engine_failure_as_http(e)))
            raise _StreamAborted() from None
        finally:
            if not self._finished and not connection.stream.closed():
                self._finish_raw()

    def _finish_raw(self) -> None:
        # APIHandler.finish() would force application/json onto event streams
        web.RequestHandler.finish(self)


#: recorded for a client that hung up before the reply ended (nginx's "client closed request")
CLIENT_GONE = 499


class _StreamAborted(Exception):
    """The engine died mid-stream; the client already got an error event."""


class ChatCompletionsHandler(InferenceHandler):
    endpoint = "chat"


class CompletionsHandler(InferenceHandler):
    endpoint = "completions"


class EmbeddingsHandler(InferenceHandler):
    endpoint = "embeddings"


default_handlers = [
    (r"bodhi/v1/models", ModelListHandler),
    (r"bodhi/v1/models/(.+)", ModelHandler),
    (r"bodhi/v1/chat/completions", ChatCompletionsHandler),
    (r"bodhi/v1/completions", CompletionsHandler),
    (r"bodhi/v1/embeddings", EmbeddingsHandler),
]
