"""Every example notebook runs top to bottom against a live server with the extension."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .live_server import jupyter  # noqa: F401  (fixture)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, jupyter, monkeypatch, tmp_path):
    _proc, _base, _log, env = jupyter("server")
    # the kernel finds the server through Jupyter's runtime files, as it would in JupyterLab
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", env["JUPYTER_RUNTIME_DIR"])
    for name in ("BODHI_BASE_URL", "BODHI_API_KEY", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", ""))
                        for cell in nb.cells if cell.cell_type == "code"
                        for o in cell.get("outputs", []))
    if path.stem == "quickstart":
        assert "smollm2-135m-instruct" in outputs
        assert "Paris" in outputs
        assert "dimensions; similar" in outputs
    elif path.stem == "magics-and-widgets":
        assert "smollm2-135m-instruct" in outputs and "not loaded" in outputs  # %bodhi_models
        assert "Paris" in outputs and "Rome" in outputs  # %%bodhi, twice, one conversation
        assert "user: What is the capital of France?" in outputs  # Chat.history
        assert "assistant: The capital of France is Paris" in outputs
