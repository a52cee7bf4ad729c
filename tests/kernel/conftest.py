"""Kernel-side code against a live server with the real engine: an IPython shell in this
process whose credential points at it."""

from __future__ import annotations

import pytest

from ..live_server import TOKEN, jupyter  # noqa: F401  (fixture)


@pytest.fixture
def live(jupyter, monkeypatch):  # noqa: F811
    """A live server; the kernel credential (BODHI_BASE_URL/BODHI_API_KEY) names it.
    Returns its base URL."""
    _proc, base, _log, _env = jupyter("server")
    monkeypatch.setenv("BODHI_BASE_URL", base + "bodhi/v1")
    monkeypatch.setenv("BODHI_API_KEY", TOKEN)
    return base


@pytest.fixture
def shell():
    """IPython's shell (a process-wide singleton) with fresh bodhi magics."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    import bodhi_jupyter

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    bodhi_jupyter.load_ipython_extension(ip)  # replaces any earlier test's magics
    yield ip
    ip.user_ns.pop("country", None)
