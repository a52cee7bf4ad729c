"""Every example notebook runs top to bottom against a live server with the extension and
the real engine, and its outputs say what the notebook promises (not just that it ran)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import demo_model_path
from .hf_hub_stand_in import HubStandIn
from .live_server import jupyter  # noqa: F401  (fixture)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# pull-a-model pulls this; the stand-in hub serves the demo model's file under that name
PULL_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
PULL_FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


def _text(output) -> str:
    """A stream's text as printed (chunks without newlines stay on their line); a value's repr
    on a line of its own."""
    if output.get("output_type") == "stream":
        return output["text"]
    return str(output.get("data", {}).get("text/plain", "")) + "\n"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, jupyter, monkeypatch, tmp_path):
    with contextlib.ExitStack() as stack:
        if path.stem == "pull-a-model":
            hub = stack.enter_context(HubStandIn())
            hub.add(PULL_REPO, PULL_FILE, path=demo_model_path())
            monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the server started below inherits it
        _proc, _base, _log, env = jupyter("server")
        # the kernel finds the server through Jupyter's runtime files, as it would in JupyterLab
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", env["JUPYTER_RUNTIME_DIR"])
        for name in ("BODHI_BASE_URL", "BODHI_API_KEY", "JUPYTERHUB_API_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            "commit notebooks with their outputs cleared"
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / path.name)  # the executed copy, to look at when this fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = "".join(_text(o) for cell in code for o in cell.get("outputs", []))

    def out(marker: str) -> str:
        """The output of the first code cell whose source contains ``marker``."""
        cell = next(c for c in code if marker in c.source)
        return "".join(_text(o) for o in cell.get("outputs", []))

    if path.stem == "quickstart":
        listed = out("llm.models.list()").split()
        assert {"smollm2-135m-instruct", "all-minilm-l6-v2"} <= set(listed), outputs
        assert "Paris" in out("capital of France"), outputs
        streamed = out("stream=True")
        assert int(re.search(r"\((\d+) chunks\)", streamed).group(1)) > 1, outputs
        assert "4 vectors of 384 dimensions" in out("embeddings.create(model=EMBEDDER, input=doc")
        # each question ranks its related sentence first, clearly above the runner-up
        ranked = re.findall(r"^(\S.*\?)\n  (\S+)  (.*)\n  (\S+)  (.*)$", out("def search"), re.M)
        assert [(q, first) for q, _s1, first, _s2, _ in ranked] == [
            ("Which city is the capital of France?",
             "Paris is the capital and largest city of France."),
            ("Where did the kitten nap?", "The cat slept all afternoon on the warm windowsill."),
        ], outputs
        assert all(float(s1) > float(s2) + 0.1 for _q, s1, _, s2, _ in ranked), outputs
    elif path.stem == "structured-output":
        for marker in ("raw = reply", "completions.parse"):
            shown = out(marker)
            assert re.search(r"^Capital\(country='[^']*', capital='[^']*', continent='"
                             r"(Africa|Americas|Asia|Europe|Oceania)'\)$", shown, re.M), outputs
        # the raw reply is JSON with exactly the schema's fields, whatever the model chose
        raw = json.loads(out("raw = reply").split("\nCapital(")[0])
        assert set(raw) == {"country", "capital", "continent"}, raw
        assert all(isinstance(v, str) and len(v) <= 40 for v in raw.values()), raw
        assert " is the capital of " in out("completions.parse"), outputs
    elif path.stem == "langchain":
        assert out("chat.invoke(").strip(), outputs
        assert "Paris" in out("chat.invoke("), outputs
        assert int(re.search(r"\((\d+) chunks\)", out("chat.stream(")).group(1)) > 1, outputs
        hits = re.findall(r"^(\S+)  (.*)$", out("similarity_search_with_score"), re.M)
        assert hits[0][1] == "The coffee machine is on the third floor, next to the library.", \
            outputs
        assert float(hits[0][0]) > float(hits[1][0]), outputs
        assert out("prompt | chat").strip(), outputs
    elif path.stem == "pull-a-model":
        model_id = f"{PULL_REPO}:Q4_K_M"
        pull_cell = next(c for c in code if "bodhi_jupyter.pull(" in c.source)
        assert f'REPO = "{PULL_REPO}"' in pull_cell.source
        assert f'FILE = "{PULL_FILE}"' in pull_cell.source
        assert model_id in out("bodhi_jupyter.pull(").splitlines(), outputs
        assert hub.repos[PULL_REPO].files[PULL_FILE].served == demo_model_path().stat().st_size
        # the progress bar (tqdm's widget, its last state kept by nbclient) reached the end
        states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        bars = [s["state"] for s in states.values() if s["model_name"] == "FloatProgressModel"]
        assert [(b["value"], b["bar_style"]) for b in bars] == \
            [(demo_model_path().stat().st_size, "success")], bars
        assert out("llm.models.list()").split()[:3] == [model_id, "hf-cache", "llama"], outputs
        assert "chat" in out("llm.models.list()"), outputs
        assert "Paris" in out("llm.chat.completions.create("), outputs
    elif path.stem == "magics-and-widgets":
        assert "smollm2-135m-instruct" in outputs and "not loaded" in outputs  # %bodhi_models
        assert "Paris" in outputs and "Rome" in outputs  # %%bodhi, twice, one conversation
        assert "user: What is the capital of France?" in outputs  # Chat.history
        assert "assistant: The capital of France is Paris" in outputs
