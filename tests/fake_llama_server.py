#!/usr/bin/env python3
"""A stand-in for llama.cpp's ``llama-server``, for tests and benchmarks.

Standard library only; starts in a few tens of milliseconds. It accepts the
llama-server command line (unknown flags are ignored), speaks HTTP/1.1 with
keep-alive and TCP_NODELAY, and answers the OpenAI-compatible endpoints the
way llama-server shapes them:

    GET  /health              {"status": "ok"} (never needs the API key)
    GET  /v1/models           one model, id = --alias or else --model
    POST /v1/chat/completions non-streaming or SSE ("stream": true)
    POST /v1/completions      non-streaming or SSE
    POST /v1/embeddings       501 unless --embedding; deterministic vectors
    POST /v1/responses        OpenAI Responses API, plain or typed SSE events
    POST /v1/messages         Anthropic Messages API, plain or typed SSE events
    POST /v1/messages/count_tokens  {"input_tokens": N}
    POST /infill              llama-server's fill-in-the-middle shape (content,
                              tokens_predicted, timings; SSE without [DONE]); with
                              --fake-no-fim the 501 of a model without FIM tokens
    POST /completion          the same shape, for a plain prompt
    GET  /props, /slots       context size and slot count
    GET  /metrics             Prometheus text with --metrics, else 501

The reply text is "fake reply 1 2 3 ...": one word per token / stream chunk,
``max_tokens`` (or ``max_completion_tokens`` / ``n_predict``) of them, 5 by
default. A chat request with ``tools`` (and ``tool_choice`` not "none") is answered
with a call of the first tool, ``{"n": 1}`` as its arguments, streamed as
``tool_calls`` deltas (id and name first, then the arguments in two pieces).
With ``--api-key KEY`` every path but /health needs
``Authorization: Bearer KEY`` (else 401, as llama-server).

Per-request fault directives, found anywhere in the text of the last user
message (chat), the prompt (completions) or the input (embeddings):

    [delay=S]        sleep S seconds before each stream chunk (the response
                     headers go out at once); non-streaming: before replying
    [crash-after=N]  send N stream chunks, then kill the whole process with
                     os._exit(1); non-streaming: exit without replying
    [status=CODE]    reply with HTTP status CODE and an error JSON whose
                     message is "fake error CODE"
    [chunks=N]       number of tokens / stream chunks (overrides max_tokens)
    [parse-error]    reply 500 with the message llama-server gives a request it
                     cannot parse ("Failed to parse messages: [json.exception...")
    [stamp=1]        each stream chunk's text is " @<ms since the epoch>" taken as it
                     is written, so a client can tell how long the chunk took to arrive

Process-level fault flags:

    --fake-start-delay S     sleep S seconds before binding the port (slow load)
    --fake-exit-on-start C   log a few lines, the last "error: failed to load
                             model (fake)", and exit with code C, never listening
    --fake-embedding-dim N   embedding size (default 8)
    --fake-ignore-sigterm    log SIGTERM and keep serving (like a llama-server
                             stuck with a stream open); SIGKILL still works
    --fake-record FILE       append every POST body as a JSON line
                             {"path", "body"} to FILE
    --fake-status CODE       answer every POST with HTTP status CODE and the
                             error JSON of [status=CODE] (an engine that always fails)
    --fake-tls CERT KEY      serve https with this PEM certificate and key
    --fake-no-fim            the model has no fill-in-the-middle tokens: /infill
                             answers 501 as llama-server does

A client that disconnects mid-stream is noticed at the next write: generation
stops and "fake-llama-server: client disconnected" goes to stderr.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "fake-llama-server:"
DIRECTIVE_RE = re.compile(r"\[(delay|crash-after|status|chunks|stamp)=([^\]\s]+)\]")
PARSE_ERROR = ("Failed to parse messages: [json.exception.type_error.302] type must be "
               "string, but is number")  # llama-server's words, measured
PUBLIC_PATHS = frozenset(("/health", "/v1/health"))
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    501: "not_supported_error",
    503: "unavailable_error",
}
REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
    429: "Too Many Requests", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


def log(msg):
    sys.stderr.write(f"{PREFIX} {msg}\n")
    sys.stderr.flush()


class ClientGone(Exception):
    pass


class RequestError(Exception):
    def __init__(self, code, message, etype=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.etype = etype


def error_body(code, message, etype=None):
    return {"error": {"code": code, "message": message,
                      "type": etype or ERROR_TYPES.get(code, "server_error")}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="fake_llama_server.py", description=__doc__.split("\n")[0])
    p.add_argument("-m", "--model", default="")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-c", "--ctx-size", type=int, default=4096)
    p.add_argument("-np", "--parallel", type=int, default=1)
    p.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", default=None)
    p.add_argument("-a", "--alias", default=None)
    p.add_argument("--embedding", "--embeddings", dest="embedding", action="store_true")
    p.add_argument("--pooling", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--jinja", dest="jinja", action="store_true", default=True)
    p.add_argument("--no-jinja", dest="jinja", action="store_false")
    p.add_argument("--chat-template", default=None)
    p.add_argument("--chat-template-file", default=None)
    p.add_argument("--metrics", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.add_argument("--fake-start-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--fake-exit-on-start", type=int, default=None, metavar="CODE")
    p.add_argument("--fake-embedding-dim", type=int, default=8, metavar="N")
    p.add_argument("--fake-ignore-sigterm", action="store_true")
    p.add_argument("--fake-record", default=None, metavar="FILE")
    p.add_argument("--fake-status", type=int, default=None, metavar="CODE")
    p.add_argument("--fake-tls", nargs=2, default=None, metavar=("CERT", "KEY"))
    p.add_argument("--fake-no-fim", action="store_true")
    args, unknown = p.parse_known_args(argv)
    return args, unknown


def directives(text):
    """Return {name: value} for the fault directives found in text."""
    found = {}
    for name, value in DIRECTIVE_RE.findall(text or ""):
        try:
            found[name] = float(value) if name == "delay" else int(value)
        except ValueError:
            raise RequestError(400, f"bad directive [{name}={value}]")
    return found


def content_text(content):
    """Text of an OpenAI message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def responses_text(content):
    """Text of a Responses API input item's content: a string or input_text parts."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def prompt_text(prompt):
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return " ".join(prompt_text(p) if not isinstance(p, int) else str(p) for p in prompt)
    return str(prompt)


def count_tokens(text):
    return max(1, len(text.split()))


def reply_tokens(n):
    n = min(n, 4096)  # a fuzzer's max_tokens of 10**18 must not exhaust memory
    words = ["fake", "reply"] + [str(i) for i in range(1, max(n - 1, 0))]
    words = words[:n]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def embed(text, dim):
    """A deterministic unit vector derived from text."""
    out = []
    counter = 0
    seed = text.encode("utf-8", "surrogatepass")
    while len(out) < dim:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        for (v,) in struct.iter_unpack("<I", digest):
            out.append(v / 2147483647.5 - 1.0)
        counter += 1
    out = out[:dim]
    norm = sum(x * x for x in out) ** 0.5 or 1.0
    return [x / norm for x in out]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.prompt_tokens = 0
        self.predicted_tokens = 0
        self.requests = 0
        self.processing = 0

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llama-server"
    sys_version = ""
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted socket
    timeout = None

    # -- plumbing ---------------------------------------------------------

    def log_message(self, format, *args):
        if self.server.cfg.verbose:
            log(f"{self.address_string()} {format % args}")

    def _raw_write(self, data):
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True
            raise ClientGone()

    def _head(self, code, ctype, extra=()):
        lines = [f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}",
                 f"Server: {self.server_version}", f"Content-Type: {ctype}"]
        lines.extend(extra)
        if self.close_connection:
            lines.append("Connection: close")
        else:
            lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    def send_bytes(self, code, body, ctype="application/json; charset=utf-8"):
        """Status line, headers and body in one write."""
        self.log_request(code)
        head = self._head(code, ctype, (f"Content-Length: {len(body)}",))
        self._raw_write(head + b"\r\n" + body)

    def send_json(self, code, obj):
        self.send_bytes(code, json.dumps(obj, separators=(",", ":")).encode())

    def send_error_json(self, code, message, etype=None):
        self.send_json(code, error_body(code, message, etype))

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def json_body(self):
        raw = self.read_body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"invalid JSON body: {e}")
        if self.server.cfg.fake_record:
            with self.server.record_lock, open(self.server.cfg.fake_record, "a") as f:
                f.write(json.dumps({"path": self.path_only, "body": body}) + "\n")
        if not isinstance(body, dict):
            raise RequestError(400, "request body must be a JSON object")
        return body

    def authorized(self):
        key = self.server.cfg.api_key
        if not key or self.path_only in PUBLIC_PATHS:
            return True
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and auth[7:].strip() == key:
            return True
        return self.headers.get("X-Api-Key", "") == key

    # -- dispatch -----------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_OPTIONS(self):
        self.read_body()
        self.log_request(200)
        self._raw_write(self._head(200, "text/plain", (
            "Access-Control-Allow-Origin: *",
            "Access-Control-Allow-Methods: GET, POST, OPTIONS",
            "Access-Control-Allow-Headers: *",
            "Content-Length: 0")) + b"\r\n")

    ROUTES = {
        ("GET", "/health"): "health", ("GET", "/v1/health"): "health",
        ("GET", "/v1/models"): "models", ("GET", "/models"): "models",
        ("POST", "/v1/chat/completions"): "chat", ("POST", "/chat/completions"): "chat",
        ("POST", "/v1/completions"): "completions", ("POST", "/completions"): "completions",
        ("POST", "/v1/embeddings"): "embeddings", ("POST", "/embeddings"): "embeddings",
        ("POST", "/v1/responses"): "responses",
        ("POST", "/v1/messages"): "messages",
        ("POST", "/v1/messages/count_tokens"): "count_tokens",
        ("POST", "/infill"): "infill", ("POST", "/completion"): "native_completion",
        ("GET", "/props"): "props", ("GET", "/slots"): "slots",
        ("GET", "/metrics"): "metrics",
    }

    def _dispatch(self, method):
        self.path_only = self.path.split("?", 1)[0]
        try:
            try:
                if not self.authorized():
                    self.read_body()
                    raise RequestError(401, "Invalid API Key", "authentication_error")
                name = self.ROUTES.get((method, self.path_only))
                if method == "POST" and self.server.cfg.fake_status is not None:
                    self.read_body()
                    code = self.server.cfg.fake_status
                    raise RequestError(code, f"fake error {code}")
                if name is None:
                    self.read_body()
                    raise RequestError(404, "File Not Found")
                getattr(self, "h_" + name)()
            except RequestError as e:
                self.send_error_json(e.code, e.message, e.etype)
        except ClientGone:
            self.close_connection = True

    # -- endpoints ----------------------------------------------------------

    def h_health(self):
        self.send_json(200, {"status": "ok"})

    def h_models(self):
        cfg = self.server.cfg
        self.send_json(200, {"object": "list", "data": [{
            "id": self.server.model_id, "object": "model", "created": self.server.created,
            "owned_by": "llamacpp",
            "meta": {"n_ctx_train": cfg.ctx_size, "n_embd": cfg.fake_embedding_dim},
        }]})

    def h_props(self):
        cfg = self.server.cfg
        self.send_json(200, {
            "default_generation_settings": {"n_ctx": cfg.ctx_size, "model": self.server.model_id},
            "total_slots": cfg.parallel, "model_path": cfg.model,
            "chat_template": cfg.chat_template or "", "build_info": "fake",
        })

    def h_slots(self):
        cfg = self.server.cfg
        n_ctx = max(1, cfg.ctx_size // max(1, cfg.parallel))
        self.send_json(200, [{"id": i, "n_ctx": n_ctx, "is_processing": False}
                             for i in range(cfg.parallel)])

    def h_metrics(self):
        if not self.server.cfg.metrics:
            raise RequestError(501, "This server does not support metrics endpoint. "
                                    "Start it with `--metrics`")
        s = self.server.stats
        with s.lock:
            values = [("prompt_tokens_total", "counter", s.prompt_tokens),
                      ("tokens_predicted_total", "counter", s.predicted_tokens),
                      ("requests_total", "counter", s.requests),
                      ("requests_processing", "gauge", s.processing),
                      ("n_ctx", "gauge", self.server.cfg.ctx_size)]
        out = []
        for name, kind, v in values:
            out.append(f"# HELP llamacpp:{name} fake {name}\n# TYPE llamacpp:{name} {kind}\n"
                       f"llamacpp:{name} {v}\n")
        self.send_bytes(200, "".join(out).encode(), "text/plain; version=0.0.4")

    def h_embeddings(self):
        cfg = self.server.cfg
        body = self.json_body()
        if not cfg.embedding:
            raise RequestError(501, "This server does not support embeddings. "
                                    "Start it with `--embeddings`")
        inp = body.get("input", body.get("content"))
        if isinstance(inp, str):
            texts = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
            texts = [prompt_text(inp)]
        elif isinstance(inp, list) and inp:
            texts = [prompt_text(x) for x in inp]
        else:
            raise RequestError(400, "\"input\" must be a string or a non-empty list")
        d = self.apply_directives(" ".join(texts), stream=False)
        if d is None:
            return
        ntok = sum(count_tokens(t) for t in texts)
        self.server.stats.add(prompt_tokens=ntok, requests=1)
        self.send_json(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": embed(t, cfg.fake_embedding_dim)}
                     for i, t in enumerate(texts)],
            "model": self.server.model_id,
            "usage": {"prompt_tokens": ntok, "total_tokens": ntok},
        })

    def h_chat(self):
        body = self.json_body()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise RequestError(400, "every message must be an object with a 'role'")
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        text = content_text(last_user.get("content"))
        prompt_tokens = sum(count_tokens(content_text(m.get("content"))) for m in messages)
        self.generate(body, text, prompt_tokens, chat=True)

    def h_completions(self):
        body = self.json_body()
        if "prompt" not in body or body["prompt"] is None:
            raise RequestError(400, "\"prompt\" must be provided")
        text = prompt_text(body["prompt"])
        self.generate(body, text, count_tokens(text), chat=False)

    def h_infill(self):
        body = self.json_body()
        if self.server.cfg.fake_no_fim:
            raise RequestError(501, "Infill is not supported by this model: prefix token is "
                                    "missing. suffix token is missing. middle token is "
                                    "missing. ", "not_supported_error")
        extra = body.get("input_extra") or []
        if not isinstance(extra, list) or not all(
                isinstance(c, dict) and isinstance(c.get("text", ""), str) for c in extra):
            raise RequestError(400, "\"input_extra\" must be an array of "
                                    "{\"filename\": string, \"text\": string}")
        texts = [body.get(k, "") for k in ("input_prefix", "input_suffix", "prompt")]
        if not all(isinstance(t, str) for t in texts):
            raise RequestError(400, "\"input_prefix\" must be a string")
        text = " ".join(texts + [c.get("text", "") for c in extra])
        self.native(body, text)

    def h_native_completion(self):
        body = self.json_body()
        if not isinstance(body.get("prompt"), str):
            raise RequestError(400, "\"prompt\" must be a string")
        self.native(body, body["prompt"])

    def native(self, body, text):
        """/infill and /completion: llama-server's own reply shape, no OpenAI envelope."""
        stream = bool(body.get("stream"))
        d = self.apply_directives(text, stream)
        if d is None:
            return
        n = body.get("n_predict")
        n = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 5
        tokens = reply_tokens(d.get("chunks", n))
        prompt_tokens = count_tokens(text)
        srv = self.server
        srv.stats.add(requests=1, prompt_tokens=prompt_tokens, predicted_tokens=len(tokens))
        timings = {"cache_n": 0, "prompt_n": prompt_tokens, "predicted_n": len(tokens)}
        last = {"index": 0, "content": "", "stop": True, "model": srv.model_id,
                "tokens_predicted": len(tokens), "tokens_evaluated": prompt_tokens,
                "stop_type": "limit", "timings": timings}
        if not stream:
            self.send_json(200, dict(last, content="".join(tokens)))
            return

        def event(obj):
            payload = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
            return b"%x\r\n%s\r\n" % (len(payload), payload)

        self.log_request(200)
        try:
            self._raw_write(self._head(200, "text/event-stream", (
                "Cache-Control: no-cache", "Transfer-Encoding: chunked")) + b"\r\n")
            for i, tok in enumerate(tokens):
                if "crash-after" in d and i >= d["crash-after"]:
                    log(f"crash-after directive: exiting after {i} chunks")
                    os._exit(1)
                if d.get("delay"):
                    time.sleep(d["delay"])
                self._raw_write(event({"index": 0, "content": tok, "stop": False,
                                       "tokens_predicted": i + 1}))
            self._raw_write(event(last) + b"0\r\n\r\n")
        except ClientGone:
            log("client disconnected")
            raise

    # -- generation ---------------------------------------------------------

    def h_responses(self):
        body = self.json_body()
        inp = body.get("input")
        if inp is None:
            raise RequestError(400, "'input' is required")
        items = [{"role": "user", "content": inp}] if isinstance(inp, str) else inp
        if not isinstance(items, list):
            raise RequestError(400, "'input' must be a string or array of objects")
        texts = [responses_text(i.get("content")) for i in items if isinstance(i, dict)]
        prompt_tokens = sum(count_tokens(t) for t in texts) + count_tokens(
            body.get("instructions") or "")
        self.typed_events(body, texts[-1] if texts else "", prompt_tokens, "responses",
                          body.get("max_output_tokens"))

    def h_messages(self):
        body = self.json_body()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array")
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        prompt_tokens = sum(count_tokens(t) for t in texts) + count_tokens(
            content_text(body.get("system")))
        self.typed_events(body, texts[-1] if texts else "", prompt_tokens, "messages",
                          body.get("max_tokens"))

    def h_count_tokens(self):
        body = self.json_body()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array")
        n = sum(count_tokens(content_text(m.get("content"))) for m in messages
                if isinstance(m, dict)) + count_tokens(content_text(body.get("system")))
        self.send_json(200, {"input_tokens": n})

    def typed_events(self, body, text, prompt_tokens, api, max_tokens):
        """The Responses and Messages APIs: one JSON reply, or SSE with ``event:`` lines
        shaped as llama-server sends them."""
        stream = bool(body.get("stream"))
        d = self.apply_directives(text, stream)
        if d is None:
            return
        n = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 5
        tokens = reply_tokens(d.get("chunks", n))
        out = "".join(tokens)
        srv = self.server
        srv.stats.add(requests=1, prompt_tokens=prompt_tokens, predicted_tokens=len(tokens))
        rid, mid = "resp_" + os.urandom(8).hex(), "msg_" + os.urandom(8).hex()
        if api == "responses":
            usage = {"input_tokens": prompt_tokens, "output_tokens": len(tokens),
                     "total_tokens": prompt_tokens + len(tokens)}
            item = {"type": "message", "status": "completed", "id": mid, "role": "assistant",
                    "content": [{"type": "output_text", "annotations": [], "text": out}]}
            whole = {"id": rid, "object": "response", "created_at": int(time.time()),
                     "status": "completed", "model": srv.model_id, "output": [item],
                     "usage": usage}
            first = [("response.created", {"response": {"id": rid, "object": "response",
                                                        "status": "in_progress"}}),
                     ("response.output_item.added", {"item": dict(item, content=[],
                                                                  status="in_progress")})]
            delta = ("response.output_text.delta", lambda t: {"item_id": mid, "delta": t})
            last = [("response.output_text.done", {"item_id": mid, "text": out}),
                    ("response.output_item.done", {"item": item}),
                    ("response.completed", {"response": whole})]
        else:
            whole = {"id": mid, "type": "message", "role": "assistant",
                     "content": [{"type": "text", "text": out}], "model": srv.model_id,
                     "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": prompt_tokens, "output_tokens": len(tokens)}}
            first = [("message_start", {"message": dict(
                         whole, content=[], stop_reason=None,
                         usage={"input_tokens": prompt_tokens, "output_tokens": 0})}),
                     ("content_block_start", {"index": 0, "content_block": {
                         "type": "text", "text": ""}})]
            delta = ("content_block_delta", lambda t: {"index": 0, "delta": {
                "type": "text_delta", "text": t}})
            last = [("content_block_stop", {"index": 0}),
                    ("message_delta", {"delta": {"stop_reason": "end_turn",
                                                 "stop_sequence": None},
                                       "usage": {"output_tokens": len(tokens)}}),
                    ("message_stop", {})]
        if not stream:
            self.send_json(200, whole)
            return

        def event(kind, data):
            payload = (f"event: {kind}\ndata: ".encode()
                       + json.dumps(dict(type=kind, **data), separators=(",", ":")).encode()
                       + b"\n\n")
            return b"%x\r\n%s\r\n" % (len(payload), payload)

        self.log_request(200)
        try:
            self._raw_write(self._head(200, "text/event-stream", (
                "Cache-Control: no-cache", "Transfer-Encoding: chunked")) + b"\r\n")
            for kind, data in first:
                self._raw_write(event(kind, data))
            for i, tok in enumerate(tokens):
                if "crash-after" in d and i >= d["crash-after"]:
                    log(f"crash-after directive: exiting after {i} chunks")
                    os._exit(1)
                if d.get("delay"):
                    time.sleep(d["delay"])
                self._raw_write(event(delta[0], delta[1](tok)))
            self._raw_write(b"".join(event(k, v) for k, v in last) + b"0\r\n\r\n")
        except ClientGone:
            log("client disconnected")
            raise

    def apply_directives(self, text, stream):
        """Handle status / non-streaming delay and crash. Returns the directives,
        or None when a reply has already been sent."""
        if "[parse-error]" in (text or ""):
            self.send_error_json(500, PARSE_ERROR, "server_error")
            return None
        d = directives(text)
        if not stream:
            if d.get("delay"):
                time.sleep(d["delay"])
            if "crash-after" in d:
                log("crash-after directive: exiting before the reply")
                os._exit(1)
        if "status" in d:
            code = d["status"]
            self.send_error_json(code, f"fake error {code}")
            return None
        return d

    def generate(self, body, text, prompt_tokens, chat):
        stream = bool(body.get("stream"))
        n = 5
        for key in ("max_tokens", "max_completion_tokens", "n_predict"):
            v = body.get(key)
            if v is not None:
                if not isinstance(v, int) or isinstance(v, bool):
                    raise RequestError(400, f"'{key}' must be an integer")
                if v >= 0:
                    n = v
                break
        d = self.apply_directives(text, stream)
        if d is None:
            return
        n = d.get("chunks", n)
        tokens = reply_tokens(n)
        srv = self.server
        cid = ("chatcmpl-" if chat else "cmpl-") + os.urandom(12).hex()
        created = int(time.time())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                 "total_tokens": prompt_tokens + len(tokens)}
        srv.stats.add(requests=1, prompt_tokens=prompt_tokens)

        tools = body.get("tools") if chat else None
        tool = None
        if isinstance(tools, list) and tools and body.get("tool_choice") != "none":
            first_tool = tools[0] if isinstance(tools[0], dict) else {}
            name = (first_tool.get("function") or {}).get("name", "tool")
            tool = {"id": "call_fake_1", "type": "function",
                    "function": {"name": name, "arguments": '{"n": 1}'}}
        if not stream and tool is not None:
            self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created,
                "model": srv.model_id, "choices": [{
                    "index": 0, "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None, "tool_calls": [tool]}}],
                "usage": dict(usage, completion_tokens=3, total_tokens=prompt_tokens + 3)})
            return
        if not stream:
            content = "".join(tokens)
            if chat:
                choice = {"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": content}}
            else:
                choice = {"index": 0, "finish_reason": "stop", "text": content, "logprobs": None}
            srv.stats.add(predicted_tokens=len(tokens))
            self.send_json(200, {
                "id": cid, "object": "chat.completion" if chat else "text_completion",
                "created": created, "model": srv.model_id, "system_fingerprint": "fake",
                "choices": [choice], "usage": usage,
            })
            return

        obj = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": cid, "object": obj, "created": created, "model": srv.model_id,
                "system_fingerprint": "fake"}

        def event(choice, **extra):
            data = dict(base, choices=[choice] if choice is not None else [], **extra)
            payload = b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
            return b"%x\r\n%s\r\n" % (len(payload), payload)

        def choice_for(tok, first, finish=None):
            if chat:
                delta = {}
                if first:
                    delta["role"] = "assistant"
                if tok is not None:
                    delta["content"] = tok
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": tok or "", "logprobs": None, "finish_reason": finish}

        if tool is not None:  # the call's id and name first, then its arguments in pieces
            fn = tool["function"]
            deltas = [{"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": tool["id"], "type": "function",
                 "function": {"name": fn["name"], "arguments": ""}}]}]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                       for piece in ('{"n"', ': 1}')]
            self.log_request(200)
            self._raw_write(self._head(200, "text/event-stream", (
                "Cache-Control: no-cache", "Transfer-Encoding: chunked")) + b"\r\n")
            for delta in deltas:
                self._raw_write(event({"index": 0, "delta": delta, "finish_reason": None}))
            payload = b"data: [DONE]\n\n"
            self._raw_write(event({"index": 0, "delta": {}, "finish_reason": "tool_calls"})
                            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
            return

        delay = d.get("delay", 0.0)
        crash_after = d.get("crash-after")
        self.log_request(200)
        srv.stats.add(processing=1)
        try:
            self._raw_write(self._head(200, "text/event-stream", (
                "Cache-Control: no-cache", "Transfer-Encoding: chunked")) + b"\r\n")
            sent = 0
            for i, tok in enumerate(tokens):
                if crash_after is not None and sent >= crash_after:
                    break
                if delay:
                    time.sleep(delay)
                if d.get("stamp"):
                    tok = f" @{time.time() * 1000:.1f}"
                self._raw_write(event(choice_for(tok, i == 0)))
                sent += 1
                srv.stats.add(predicted_tokens=1)
            if crash_after is not None:
                log(f"crash-after directive: exiting after {sent} chunks")
                os._exit(1)
            tail = event(choice_for(None, not tokens, "stop"))
            opts = body.get("stream_options")
            if isinstance(opts, dict) and opts.get("include_usage"):
                tail += event(None, usage=usage)
            payload = b"data: [DONE]\n\n"
            tail += b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
            self._raw_write(tail)
        except ClientGone:
            log("client disconnected")
            raise
        finally:
            srv.stats.add(processing=-1)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ClientGone, socket.timeout)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    cfg, unknown = parse_args(argv)
    model = cfg.model or "fake-model.gguf"
    log(f"loading {model} (pid {os.getpid()})")
    if unknown:
        log(f"ignoring flags: {' '.join(unknown)}")
    if cfg.fake_exit_on_start is not None:
        log(f"llama_model_load: error loading model: fake failure for {model}")
        log("llama_model_load_from_file_impl: failed to load model")
        sys.stderr.write("error: failed to load model (fake)\n")
        sys.stderr.flush()
        sys.exit(cfg.fake_exit_on_start)
    if cfg.fake_start_delay > 0:
        time.sleep(cfg.fake_start_delay)

    if cfg.fake_ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *a: log("SIGTERM received and ignored"))
    else:
        def on_term(signum, frame):
            log(f"signal {signum} received, exiting")
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)

    Server.address_family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    try:
        httpd = Server((cfg.host, cfg.port), Handler)
    except OSError as e:
        sys.stderr.write(f"error: couldn't bind HTTP server socket, hostname: {cfg.host}, "
                         f"port: {cfg.port}: {e}\n")
        return 1
    if cfg.fake_tls:
        import ssl

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*cfg.fake_tls)
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    httpd.cfg = cfg
    httpd.model_id = cfg.alias or cfg.model or "fake-model"
    httpd.created = int(time.time())
    httpd.stats = Stats()
    httpd.record_lock = threading.Lock()
    host, port = httpd.server_address[:2]
    log(f"listening on http://{cfg.host}:{port} (pid {os.getpid()})")
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log("interrupted, exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
