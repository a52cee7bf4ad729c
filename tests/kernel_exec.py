"""Run code in a kernel of a live Jupyter server, as JupyterLab does: a session through
the REST API, then execute requests over the kernel's websocket in Jupyter's JSON message
protocol (``api/kernels/<id>/channels``, no subprotocol)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def start_session(base: str, token: str, path: str, kernel: str = "python3") -> tuple[str, str]:
    """(session id, kernel id) of a new notebook session at ``path`` (an API path);
    ``base`` ends with the server's base URL and a slash."""
    r = httpx.post(base + "api/sessions", timeout=60, headers={"Authorization": f"token {token}"},
                   json={"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook",
                         "kernel": {"name": kernel}})
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()["id"], r.json()["kernel"]["id"]


@dataclass
class Execution:
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)  # text/plain of execute_result
    displays: list[str] = field(default_factory=list)  # text/plain of (updated) displays
    error: dict | None = None  # {ename, evalue, traceback}
    status: str | None = None  # of the execute_reply

    def check(self) -> "Execution":
        """This execution, or an AssertionError showing the kernel's traceback."""
        assert self.error is None and self.status == "ok", (
            f"{self.error and self.error['ename']}: {self.error and self.error['evalue']}\n"
            + "\n".join((self.error or {}).get("traceback", [])) + self.stderr)
        return self


class KernelChannels:
    """One websocket to a kernel; ``execute`` waits for the reply and the idle status."""

    def __init__(self, conn):
        self.conn = conn
        self.session = uuid.uuid4().hex

    @classmethod
    async def connect(cls, base: str, token: str, kernel_id: str) -> "KernelChannels":
        url = base.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
        conn = await websocket_connect(HTTPRequest(url, headers={
            "Authorization": f"token {token}"}, request_timeout=60))
        return cls(conn)

    async def execute(self, code: str, timeout: float = 120) -> Execution:
        msg_id = uuid.uuid4().hex
        self.conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out, replied, idle = Execution(), False, False
        async with asyncio.timeout(timeout):
            while not (replied and idle):
                raw = await self.conn.read_message()
                if raw is None:
                    raise AssertionError("the kernel's websocket closed")
                if isinstance(raw, bytes):
                    continue  # binary frames carry buffers; none of ours
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    if content["name"] == "stdout":
                        out.stdout += content["text"]
                    else:
                        out.stderr += content["text"]
                elif kind in ("display_data", "update_display_data"):
                    out.displays.append(content["data"].get("text/plain", ""))
                elif kind == "execute_result":
                    out.results.append(content["data"].get("text/plain", ""))
                elif kind == "error":
                    out.error = content
                elif kind == "execute_reply":
                    replied, out.status = True, content["status"]
                elif kind == "status" and content["execution_state"] == "idle":
                    idle = True
        return out

    def close(self) -> None:
        self.conn.close()
