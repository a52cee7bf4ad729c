"""Who is calling and what they may do, whatever the way they authenticated."""

from __future__ import annotations

from dataclasses import dataclass

from .scopes import includes


@dataclass(frozen=True)
class Principal:
    name: str  # the owner of engines, tokens and usage records
    role: str
    auth_method: str  # "jupyter" (Jupyter/JupyterHub login or token) or "bodhi_token"
    scope: str  # highest scope held: the role's, or the token's (never above the role's)
    token_id: str | None = None
    token_name: str | None = None
    models: tuple[str, ...] | None = None  # a token restricted to these models
    groups: tuple[str, ...] = ()  # JupyterHub groups, for group roles
    notebook: str | None = None  # a kernel token's notebook (usage by notebook)
    kernel: bool = False  # the credential the server handed to a kernel

    @property
    def is_token(self) -> bool:
        return self.auth_method == "bodhi_token"

    def can(self, scope: str) -> bool:
        return includes(self.scope, scope)

    def may_use_model(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models
