"""Refusing prompts that cannot fit an engine's context before any engine is touched.

A 50 MB prompt sent to llama-server took 35-65 s to be refused, grew the engine's memory by
~2.5 GiB that it never gave back, and slowed everyone else's chats to seconds. No token can
cover more than the model's longest token, so ``utf8_bytes / longest_token_bytes`` is a
lower bound on a text's token count; when even that exceeds one slot's context, the request
is refused at once with OpenAI's ``context_length_exceeded``. Prompts that might fit go to
the engine, which has the final word.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from .engine.launcher import server_flags
from .errors import BodhiAPIError
from .inference import PreparedRequest
from .models.registry import ResolvedModel
from .models.vocabulary import Vocabulary, file_key, read_vocabulary

#: what was read from each version of a model file; shared by every server in the process
_vocabularies: dict[tuple, Vocabulary | None] = {}

#: the field holding the prompt, per endpoint (count_tokens generates nothing: not checked)
_WHAT = {"chat": "messages", "messages": "messages", "responses": "input",
         "completions": "prompt", "embeddings": "input"}
#: conversation-style endpoints, and their separate system text field
_CONVERSATION = {"chat": None, "messages": "system", "responses": "instructions"}


def slot_context(model: ResolvedModel, launcher_args: Iterable[str] = ()) -> int | None:
    """Tokens one request may use in the engine started for ``model``: ``ctx_size /
    parallel`` as llama-server splits it. None when it cannot be known."""
    flags = server_flags(model, launcher_args)
    if flags is None:
        return None
    ctx, parallel, unified = flags
    if ctx <= 0 or parallel <= 0:  # the model's own size, or chosen by the engine
        return None
    return ctx if unified else ctx // parallel


def _text_bytes(value) -> int:
    return len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 0


def _parts_bytes(content) -> int:
    """A string, or content parts/blocks with ``text`` (OpenAI, Anthropic, Responses)."""
    if isinstance(content, list):
        return sum(_text_bytes(p.get("text")) for p in content if isinstance(p, dict))
    return _text_bytes(content)


def _chat_bytes(messages) -> int:
    """Bytes of what every chat template keeps: the content of all but assistant turns
    (some templates drop earlier reasoning from assistant turns)."""
    if isinstance(messages, str):  # the Responses API's plain-text input
        return _text_bytes(messages)
    total = 0
    for m in messages if isinstance(messages, list) else ():
        if not isinstance(m, dict) or m.get("role") == "assistant":
            continue
        total += _parts_bytes(m.get("content"))
    return total


def least_tokens(endpoint: str, body: dict, vocab: Vocabulary) -> int:
    """The fewest tokens the largest single sequence of the request can take."""
    if endpoint in _CONVERSATION:
        size = _chat_bytes(body.get(_WHAT[endpoint]))
        if _CONVERSATION[endpoint]:
            size += _parts_bytes(body.get(_CONVERSATION[endpoint]))
        return -(-size // vocab.longest_token_bytes)
    value = body.get(_WHAT[endpoint])
    if isinstance(value, str) or (isinstance(value, list) and value
                                  and all(isinstance(v, int) for v in value)):
        value = [value]  # one text, or one sequence of token ids
    most = 0
    for item in value if isinstance(value, list) else ():
        if isinstance(item, str):
            most = max(most, -(-_text_bytes(item) // vocab.longest_token_bytes))
        elif isinstance(item, list):
            most = max(most, len(item))  # token ids: the count is exact
    return most


class ContextGuard:
    """Checks a prepared request against the context of the engine that would serve it.
    The model's vocabulary is read once per file, in a thread; requests meanwhile share the
    read."""

    def __init__(self, launcher_args: Callable[[], Iterable[str]] = tuple, log=None):
        self.launcher_args = launcher_args
        self.log = log
        self._reading: dict[tuple, asyncio.Future] = {}

    async def vocabulary(self, path: str) -> Vocabulary | None:
        key = file_key(path)
        if key is None:
            return None
        if key in _vocabularies:
            return _vocabularies[key]
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(
                asyncio.to_thread(read_vocabulary, path))
            reading.add_done_callback(lambda f: self._store(key, f))
        return await asyncio.shield(reading)

    def _store(self, key: tuple, done: asyncio.Future) -> None:
        self._reading.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            _vocabularies[key] = done.result()
            if done.result() is None and self.log:
                self.log.info("bodhi: no usable vocabulary in %s; prompt sizes are left to "
                              "the engine", key[0])

    async def check(self, request: PreparedRequest) -> None:
        """400 ``context_length_exceeded`` for a prompt that cannot fit one slot."""
        endpoint = request.endpoint
        if endpoint == "infill":
            # /infill trims its input to fit; the prompt made of it for a model without FIM
            # tokens is sent whole
            if request.mode != "completion":
                return
            endpoint = "completions"
        if endpoint not in _WHAT:
            return
        slot = slot_context(request.model, self.launcher_args())
        if slot is None or len(request.payload) <= slot:
            # a text takes at most as many tokens as its UTF-8 bytes, and the JSON sent
            # holds at least that many: a payload no longer than the slot always fits
            return
        vocab = await self.vocabulary(request.model.path)
        if vocab is None:
            return
        least = least_tokens(endpoint, request.body, vocab)
        if least > slot:
            what = _WHAT[endpoint]
            raise BodhiAPIError(
                400, f"This model's maximum context length is {slot} tokens. However, your "
                f"{what} resulted in at least {least} tokens. Please reduce the length of "
                f"the {what}.", code="context_length_exceeded", param=what)
