"""The JupyterLab extension is built into the package and installed where JupyterLab
finds it: `jupyter labextension list` shows it enabled and OK, with its schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_labextension_is_installed_and_enabled():
    out = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if "bodhi-jupyter" in ln), "")
    assert "enabled" in line and "OK" in line, text


def test_the_installed_extension_carries_its_settings_schema():
    share = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "bodhi-jupyter"
    meta = json.loads((share / "package.json").read_text())
    assert meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    schema = json.loads((share / "schemas" / "bodhi-jupyter" / "plugin.json").read_text())
    assert {"defaultModel", "sendWith", "openOnFirstStart"} <= set(schema["properties"])
    keys = [s["keys"] for s in schema["jupyter.lab.shortcuts"]]
    assert ["Accel Shift Y"] in keys
