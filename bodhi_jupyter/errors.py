"""The one error type every bodhi endpoint answers with, and the one place where domain
errors (unknown model, engines at their cap, a failing engine) become HTTP.

``type`` follows the API family a route belongs to. OpenAI routes use OpenAI's values:
``invalid_request_error`` for every 4xx that is the request's fault (400, 401, 404, 405,
409, 413, 422; a bad key is OpenAI's ``invalid_request_error`` with ``invalid_api_key``),
``permission_error`` (403),
``rate_limit_error`` (429) and ``server_error`` for every 5xx. OpenAI itself sends
``requests``/``tokens`` as the type of a 429; the openai and anthropic SDKs and LiteLLM map
errors by status code alone, so the clearer ``rate_limit_error`` (also Anthropic's) costs
no client anything. Anthropic routes render :meth:`BodhiAPIError.anthropic_body`, the
Ollama routes (``bodhi/api/*``) :meth:`BodhiAPIError.ollama_body`.
"""

from __future__ import annotations

from http import HTTPStatus

from .engine.process import EngineFailed
from .engine.supervisor import CapacityError, EngineUnavailable
from .models.pulls import PullError, PullNotFound
from .models.registry import ModelNotFound

_OPENAI_TYPES = {
    403: "permission_error",
    429: "rate_limit_error",
}

#: https://docs.anthropic.com/en/api/errors
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status."""
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else
                             "invalid_request_error")


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else
                                "invalid_request_error")


class BodhiAPIError(Exception):
    """Raised by handlers and domain code; rendered as
    ``{"error": {"message", "type", "code", "param"}}`` with ``status``."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
        self.param = param
        self.type = type or error_type(status)
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code,
                          "param": self.param}}

    def anthropic_body(self) -> dict:
        """Anthropic's shape; the field a 400 is about leads the message."""
        message = self.message
        if self.param and self.param not in message:
            message = f"{self.param}: {message}"
        return {"type": "error", "error": {"type": anthropic_error_type(self.status),
                                           "message": message}}

    def ollama_body(self) -> dict:
        """Ollama's shape, ``{"error": "message"}``: the ollama client raises
        ``ResponseError`` with that string and the status; the field leads the message."""
        message = self.message
        if self.param and self.param not in message:
            message = f"{self.param}: {message}"
        return {"error": message}


def invalid(message: str, param: str | None = None, code: str = "invalid_value"):
    return BodhiAPIError(400, message, code=code, param=param)


def as_http(exc: BaseException | None) -> BodhiAPIError | None:
    """The HTTP error for a domain error (None for anything else, which is a 500)."""
    if isinstance(exc, BodhiAPIError):
        return exc
    if isinstance(exc, ModelNotFound):
        # the model a request is for is a missing resource (OpenAI: 404 model_not_found);
        # one named in a list field (a token's "models") makes the request invalid
        param = getattr(exc, "param", None) or "model"
        return BodhiAPIError(404 if param == "model" else 400, str(exc),
                             code="model_not_found", param=param)
    if isinstance(exc, PullError):  # the hub's answer, the disk, or the request
        return BodhiAPIError(exc.status, exc.message, code=exc.code, param=exc.param)
    if isinstance(exc, PullNotFound):
        return BodhiAPIError(404, str(exc), code="pull_not_found")
    if isinstance(exc, CapacityError):
        return BodhiAPIError(503, str(exc), code="capacity_exceeded",
                             headers={"Retry-After": "5"})
    if isinstance(exc, EngineFailed):  # died or broke off while answering
        return BodhiAPIError(502, str(exc), code="engine_error")
    if isinstance(exc, EngineUnavailable):
        headers = {"Retry-After": str(int(exc.retry_after) + 1)} if exc.retry_after else {}
        return BodhiAPIError(502, str(exc), code="engine_unavailable", headers=headers)
    return None
