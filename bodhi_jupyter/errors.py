"""The one error type every bodhi endpoint answers with, in OpenAI's shape."""

from __future__ import annotations

from http import HTTPStatus

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "engine_error",
    503: "service_unavailable",
}


def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


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


def invalid(message: str, param: str | None = None, code: str = "invalid_value"):
    return BodhiAPIError(400, message, code=code, param=param)
