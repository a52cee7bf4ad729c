"""bodhi-jupyter: local LLMs served from inside Jupyter."""

__version__ = "0.1.0"


def pull(repo: str, filename: str, revision: str | None = None, **kwargs) -> str | None:
    """Pull a GGUF from the Hugging Face hub through this Jupyter server, with a progress
    bar; returns the model id to chat with (see ``bodhi_jupyter.kernel.pulls.pull``)."""
    from .kernel.pulls import pull as _pull

    return _pull(repo, filename, revision, **kwargs)


def load_ipython_extension(ipython) -> None:
    """``%load_ext bodhi_jupyter``: the ``%%bodhi`` and ``%bodhi_models`` magics."""
    from .kernel.magics import load_ipython_extension as load

    load(ipython)


#: kernel-side names, imported on first use: this module is also the server extension's
_LAZY = {
    "client": ".kernel.client",
    "async_client": ".kernel.client",
    "ServerNotFound": ".kernel.client",
    "Chat": ".kernel.chat_widget",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points():
    from .app import BodhiApp

    return [{"module": "bodhi_jupyter.app", "app": BodhiApp}]
