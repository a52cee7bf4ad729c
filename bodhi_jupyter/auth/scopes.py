"""Scopes and roles. Each scope includes the ones before it; each role grants up to one."""

from __future__ import annotations

SCOPES = ("read", "write", "admin")
ROLES = ("user", "power_user", "admin")

#: the highest scope a role may hold or hand to a token
ROLE_SCOPE = {"user": "write", "power_user": "write", "admin": "admin"}


def includes(granted: str, required: str) -> bool:
    """Whether ``granted`` covers ``required`` (admin covers write covers read)."""
    return SCOPES.index(granted) >= SCOPES.index(required)


def narrower(a: str, b: str) -> str:
    return a if SCOPES.index(a) <= SCOPES.index(b) else b
