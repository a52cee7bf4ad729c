"""Helpers for notebook code: an openai client already pointed at this Jupyter server."""

from .client import ServerNotFound, async_client, client, connection

__all__ = ["ServerNotFound", "async_client", "client", "connection"]
