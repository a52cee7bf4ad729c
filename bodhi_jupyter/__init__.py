"""bodhi-jupyter: local LLMs served from inside Jupyter."""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    from .app import BodhiApp

    return [{"module": "bodhi_jupyter.app", "app": BodhiApp}]
