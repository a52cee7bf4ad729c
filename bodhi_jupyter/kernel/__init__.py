"""Helpers for notebook code: an openai client already pointed at this Jupyter server."""

from .client import async_client, client, connection

__all__ = ["async_client", "client", "connection"]
