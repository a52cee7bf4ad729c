"""``bodhi_jupyter.pull``: pull a GGUF from the Hugging Face hub through the Jupyter server
a notebook runs under, with a progress bar, and get the model id to chat with.

Only the standard library and tqdm (which huggingface_hub brings): a kernel that imports
bodhi_jupyter pays for nothing until it pulls.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from .client import connection


class PullFailed(RuntimeError):
    """The server refused the pull or the pull failed; ``code`` says why (repo_not_found,
    file_not_found, gated, network_error, disk_full, not_gguf, ...)."""

    def __init__(self, message: str, code: str | None = None, pull: dict | None = None):
        super().__init__(message)
        self.code, self.pull = code, pull


def _pulls_url() -> tuple[str, str]:
    api, key = connection()  # ".../bodhi/v1"
    base = api[:-len("/v1")] if api.endswith("/v1") else api
    return base + "/app/models/pulls", key


def _call(method: str, url: str, key: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read()).get("error", {})
        except ValueError:
            err = {}
        raise PullFailed(f"{e.code}: {err.get('message') or e.reason}",
                         err.get("code")) from None
    return json.loads(raw) if raw else {}


def pull(repo: str, filename: str, revision: str | None = None, *, progress: bool = True,
         poll_interval: float = 0.5, timeout: float | None = None) -> str | None:
    """Pull ``filename`` (a .gguf; any part of a split one) from ``repo`` on the Hugging Face
    hub into the server's cache and return its model id, once it is listed in
    ``/v1/models``. Interrupting the cell cancels the pull."""
    url, key = _pulls_url()
    body = {"repo": repo, "filename": filename}
    if revision is not None:
        body["revision"] = revision
    state = _call("POST", url, key, body)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=state.get("bytes_total"), unit="B", unit_scale=True,
                   unit_divisor=1024, desc=filename.rsplit("/", 1)[-1])
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if bar is not None:
                if state.get("bytes_total") and bar.total != state["bytes_total"]:
                    bar.total = state["bytes_total"]
                bar.update(state["bytes_done"] - bar.n)
            if state["state"] == "done":
                return state["model_id"]  # None for a file that is no model (a projector)
            if state["state"] in ("failed", "cancelled"):
                err = state.get("error") or {}
                raise PullFailed(err.get("message") or f"the pull was {state['state']}",
                                 err.get("code") or state["state"], state)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the pull {state['id']} is still {state['state']}")
            time.sleep(poll_interval)
            state = _call("GET", f"{url}/{state['id']}", key)
    except KeyboardInterrupt:
        _call("DELETE", f"{url}/{state['id']}", key)
        raise
    finally:
        if bar is not None:
            bar.close()
