"""One conversation with a chat model, streamed: what ``%%bodhi`` cells and the chat widget
share.

A reply cut short (an interrupt, Stop) stays in the history with ``"stopped": True``: the
user saw it, and "go on" in the next turn should continue from it. That flag is ours; the
messages sent to the server carry only ``role`` and ``content``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def error_line(exc: Exception) -> str:
    """One line for an openai error: status, code and the server's message."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        code = f" {exc.code}" if getattr(exc, "code", None) else ""
        return f"{exc.status_code}{code}: {message}"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the server at {exc.request.url}: {exc}"
    return str(exc)


@dataclass
class Reply:
    text: str
    stopped: bool = False
    finish_reason: str | None = None


class Conversation:
    """The messages so far, the system prompt and the model they go to."""

    def __init__(self, model: str | None = None, system: str | None = None):
        self.model = model
        self.system = system
        self.messages: list[dict] = []  # user and assistant turns, oldest first

    def reset(self, system: str | None = None) -> None:
        self.messages = []
        self.system = system

    def history(self) -> list[dict]:
        """A copy: the system prompt (if any) and every turn."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [dict(m) for m in head + self.messages]

    def request_messages(self, user_text: str) -> list[dict]:
        return [{"role": m["role"], "content": m["content"]} for m in self.history()] + [
            {"role": "user", "content": user_text}]

    def stream(self, client, user_text: str, *, on_text: Callable[[str], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False,
               on_stream: Callable[[object], None] | None = None, **options) -> Reply:
        """Ask, streaming; ``on_text(text_so_far)`` after each piece. Stops when
        ``should_stop()`` turns true or on KeyboardInterrupt (re-raised once the partial
        reply is recorded). Closing the response makes the server hang up on the engine,
        which stops generating. Both turns join the history only once something came
        back: a failed request leaves the conversation as it was."""
        options = {k: v for k, v in options.items() if v is not None}
        stream = client.chat.completions.create(
            model=self.model, messages=self.request_messages(user_text), stream=True,
            **options)
        if on_stream is not None:
            on_stream(stream)
        reply = Reply("")
        interrupted = False
        try:
            for chunk in stream:
                if should_stop():
                    reply.stopped = True
                    break
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    reply.finish_reason = choice.finish_reason
                piece = choice.delta.content if choice.delta else None
                if piece:
                    reply.text += piece
                    if on_text is not None:
                        on_text(reply.text)
            else:
                reply.stopped = should_stop() and reply.finish_reason is None
        except KeyboardInterrupt:
            reply.stopped = interrupted = True
        except Exception:
            if not should_stop():
                raise
            reply.stopped = True  # Stop closed the stream under us
        finally:
            stream.close()
        self._record(user_text, reply)
        if interrupted:
            raise KeyboardInterrupt
        return reply

    def _record(self, user_text: str, reply: Reply) -> None:
        if reply.stopped and not reply.text:
            return  # nothing came back: as if it had not been asked
        self.messages.append({"role": "user", "content": user_text})
        turn = {"role": "assistant", "content": reply.text}
        if reply.stopped:
            turn["stopped"] = True
        self.messages.append(turn)
