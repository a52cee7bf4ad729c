"""The models a notebook can use, with their engines' state, and the default chat model.

One place for the magics and the chat widget: both list models the same way and pick the
same default (CONTRACTS.md: the first chat-capable model, preferring a loaded one).
"""

from __future__ import annotations

import html
import json
import urllib.request
from dataclasses import dataclass, field

from .client import connection

#: engine states (GET bodhi/app/processes) in the words a notebook user reads
_STATE_WORDS = {"ready": "loaded", "starting": "loading", "stopping": "unloading",
                "crashed": "failed", "failed": "failed"}


class NoChatModel(RuntimeError):
    """The server lists no model that can chat."""


def _app_get(path: str) -> dict:
    """GET ``bodhi/app/<path>`` with the kernel's credential (the app API sits next to
    ``bodhi/v1``)."""
    api, key = connection()
    base = api[:-len("/v1")] if api.endswith("/v1") else api
    req = urllib.request.Request(f"{base}/app/{path}",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@dataclass
class ModelInfo:
    id: str
    capabilities: list[str] | None  # None: the server could not read the file
    engines: list[dict] = field(default_factory=list)  # {"state", "embedding"} each

    @property
    def can_chat(self) -> bool:
        return self.capabilities is None or "chat" in self.capabilities

    @property
    def loaded(self) -> bool:
        """A chat engine is up for it."""
        return any(e["state"] == "ready" and not e["embedding"] for e in self.engines)

    @property
    def state(self) -> str:
        """"loaded", "loading", "not loaded", or each engine's state when it has two
        (a chat and an embedding engine)."""
        if not self.engines:
            return "not loaded"
        words = []
        for e in self.engines:
            word = _STATE_WORDS.get(e["state"], e["state"])
            words.append(f"{word} (embedding)" if e["embedding"] else word)
        return ", ".join(words)

    def capabilities_text(self) -> str:
        return "unknown" if self.capabilities is None else ", ".join(self.capabilities)


def list_models(client=None) -> list[ModelInfo]:
    """Every model this kernel's credential may use, with its engines' state."""
    from .client import client as make_client

    llm = client or make_client()
    models = [ModelInfo(m.id, getattr(m, "capabilities", None))
              for m in llm.models.list().data]
    by_id = {m.id: m for m in models}
    try:
        processes = _app_get("processes?page_size=100")["data"]
    except OSError:
        processes = []  # the state is a nicety; the listing still stands
    for p in processes:
        if p.get("model") in by_id:
            by_id[p["model"]].engines.append({"state": p["state"],
                                              "embedding": bool(p.get("embedding"))})
    return models


def chat_models(models: list[ModelInfo]) -> list[ModelInfo]:
    return [m for m in models if m.can_chat]


def default_chat_model(models: list[ModelInfo]) -> str:
    """The first chat-capable model, preferring one that is already loaded, then one whose
    file says it can chat over one the server could not read (which may be no model)."""
    chat = chat_models(models)
    if not chat:
        raise NoChatModel("the server lists no chat model; pull one with "
                          "bodhi_jupyter.pull(repo, filename)")
    return min(chat, key=lambda m: (not m.loaded, m.capabilities is None)).id


class ModelTable:
    """What ``%bodhi_models`` shows: a Markdown table in JupyterLab, plain text elsewhere;
    ``.models`` for code."""

    def __init__(self, models: list[ModelInfo]):
        self.models = models

    def _rows(self) -> list[tuple[str, str, str]]:
        return [(m.id, m.capabilities_text(), m.state) for m in self.models]

    def _repr_markdown_(self) -> str:
        if not self.models:
            return "*No models.*"
        def cell(text: str) -> str:
            return html.escape(text).replace("|", "\\|")
        lines = ["| Model | Capabilities | State |", "|---|---|---|"]
        lines += [f"| `{cell(a)}` | {cell(b)} | {cell(c)} |" for a, b, c in self._rows()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        if not self.models:
            return "No models."
        rows = [("MODEL", "CAPABILITIES", "STATE"), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
                         for r in rows)
