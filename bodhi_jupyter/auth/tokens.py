"""API tokens: minted once, stored as prefix + SHA-256, checked in constant time.

Tokens are 32+ random bytes, so a plain SHA-256 is as strong as a slow hash would be and
costs microseconds per request (JupyterHub's API tokens are stored the same way). Verified
tokens are cached briefly in memory; every change through this store drops the cache entry,
so a revoked token is refused on its very next use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..errors import BodhiAPIError
if TYPE_CHECKING:  # SQLAlchemy loads when a query first runs, not with the server
    from sqlalchemy.engine import Row

    from ..store.database import Database

TOKEN_PREFIX = "bodhi_"
PREFIX_LEN = len(TOKEN_PREFIX) + 8
STATUSES = ("active", "inactive")
_CACHE_SECONDS = 30.0
_LAST_USED_EVERY = 60.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str | None) -> bool:
    return bool(value) and value.startswith(TOKEN_PREFIX)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:  # SQLite hands back naive datetimes
        return dt.replace(tzinfo=timezone.utc)
    return dt


@dataclass(frozen=True)
class TokenInfo:
    id: str
    owner: str
    name: str
    prefix: str
    scope: str
    models: tuple[str, ...] | None
    groups: tuple[str, ...]
    status: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    kernel_id: str | None = None  # a kernel's own credential (auth/kernel_tokens.py)
    notebook: str | None = None  # ... and the notebook that kernel runs
    kernel_server: str | None = None  # the server that handed it to a kernel

    @classmethod
    def of(cls, row: Row) -> "TokenInfo":
        return cls(row.id, row.owner, row.name, row.prefix, row.scope,
                   tuple(row.models) if row.models is not None else None,
                   tuple(row.groups or ()), row.status,
                   _utc(row.created_at), _utc(row.last_used_at), _utc(row.expires_at),
                   row.kernel_id, row.notebook, row.kernel_server)

    @property
    def for_kernel(self) -> bool:
        """A kernel's own credential (handed over by the server, not minted by a person)."""
        return self.kernel_server is not None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(timezone.utc)

    def public(self) -> dict:
        """What the API shows: never the secret nor its hash."""
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "scope": self.scope,
                "models": list(self.models) if self.models is not None else None,
                "status": "expired" if self.status == "active" and self.expired else self.status,
                "created_at": iso(self.created_at), "last_used_at": iso(self.last_used_at),
                "expires_at": iso(self.expires_at), "kernel": self.for_kernel,
                "notebook": self.notebook}


class TokenStore:
    def __init__(self, database: Database):
        self.database = database
        self._cache: dict[str, tuple[TokenInfo, float]] = {}  # hash -> (info, cached at)
        self._last_used_written: dict[str, float] = {}
        self._refused: set[str] = set()  # hashes being revoked: refused before the delete ends

    # -- minting and managing --------------------------------------------------------------
    def create(self, owner: str, name: str, scope: str, expires_in: int | None = None,
               models: list[str] | None = None,
               groups: list[str] | tuple[str, ...] = (), kernel_server: str | None = None,
               notebook: str | None = None) -> tuple[str, TokenInfo]:
        """Returns the token itself (shown once) and its stored description."""
        from ..store.tables import api_tokens
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = (datetime.now(timezone.utc) + timedelta(seconds=expires_in)
                      if expires_in else None)
        with self.database.begin() as conn:
            row = conn.execute(api_tokens.insert().values(
                id=uuid.uuid4().hex, owner=owner, name=name, prefix=token[:PREFIX_LEN],
                hashed=hash_token(token), scope=scope, models=models,
                groups=list(groups) or None, status="active",
                created_at=datetime.now(timezone.utc), expires_at=expires_at,
                kernel_server=kernel_server, notebook=notebook).returning(api_tokens)).one()
        return token, TokenInfo.of(row)

    def list(self, owner: str | None) -> list[TokenInfo]:
        """Tokens of ``owner``, newest first (everyone's when owner is None)."""
        from sqlalchemy import select

        from ..store.tables import api_tokens as t
        query = select(t).order_by(t.c.created_at.desc(), t.c.id)
        if owner is not None:
            query = query.where(t.c.owner == owner)
        with self.database.read() as conn:
            return [TokenInfo.of(r) for r in conn.execute(query)]

    def get(self, token_id: str) -> TokenInfo | None:
        with self.database.read() as conn:
            row = _row_of(conn, token_id)
        return TokenInfo.of(row) if row else None

    def update(self, token_id: str, name: str | None = None, status: str | None = None,
               kernel_id: str | None = None, notebook: str | None = None
               ) -> TokenInfo | None:
        """Change the given fields (None: leave as is); ``kernel_id`` and ``notebook`` are a
        kernel credential's (which kernel holds it, a renamed notebook)."""
        from ..store.tables import api_tokens as t
        changes = {field: value for field, value in (
            ("name", name), ("status", status), ("kernel_id", kernel_id),
            ("notebook", notebook)) if value is not None}
        with self.database.begin() as conn:
            row = _row_of(conn, token_id)
            if row is None:
                return None
            if changes:
                row = conn.execute(t.update().where(t.c.id == token_id).values(changes)
                                   .returning(t)).one()
            self._forget(row.hashed)
        return TokenInfo.of(row)

    def delete(self, token_id: str) -> bool:
        from ..store.tables import api_tokens as t
        with self.database.begin() as conn:
            row = _row_of(conn, token_id)
            if row is None:
                return False
            hashed = row.hashed
            self._forget(hashed)
            conn.execute(t.delete().where(t.c.id == token_id))
        self._refused.discard(hashed)  # gone from the table: refused by the lookup now
        return True

    def _forget(self, hashed: str) -> None:
        self._cache.pop(hashed, None)

    # -- kernel credentials ----------------------------------------------------------------
    def kernel_tokens(self, kernel_server_like: str) -> list[tuple[str, str, str | None]]:
        """(token id, kernel server, kernel id) of the kernel tokens whose server matches
        the SQL LIKE pattern."""
        from sqlalchemy import select

        from ..store.tables import api_tokens as t
        with self.database.read() as conn:
            return [tuple(r) for r in conn.execute(
                select(t.c.id, t.c.kernel_server, t.c.kernel_id)
                .where(t.c.kernel_server.like(kernel_server_like)))]

    def refuse(self, hashed: str) -> None:
        """Refuse a token (by its hash) from now on, before its deletion has finished."""
        self._refused.add(hashed)
        self._forget(hashed)

    # -- checking --------------------------------------------------------------------------
    def authenticate(self, token: str) -> TokenInfo:
        """The token's description, or a 401 naming why it is refused."""
        hashed = hash_token(token)
        if hashed in self._refused:
            raise BodhiAPIError(401, "Invalid API token", code="token_invalid")
        now = time.monotonic()
        cached = self._cache.get(hashed)
        if cached is not None and now - cached[1] < _CACHE_SECONDS:
            info = cached[0]
        else:
            info = self._lookup(token, hashed)
            self._cache[hashed] = (info, now)
        if info.status != "active":
            raise BodhiAPIError(401, "This API token is inactive", code="token_inactive")
        if info.expired:
            raise BodhiAPIError(401, "This API token has expired", code="token_expired")
        self._touch(info, now)
        return info

    def _lookup(self, token: str, hashed: str) -> TokenInfo:
        from sqlalchemy import select

        from ..store.tables import api_tokens as t
        with self.database.read() as conn:
            rows = conn.execute(select(t).where(t.c.prefix == token[:PREFIX_LEN]))
            for row in rows:
                if hmac.compare_digest(row.hashed, hashed):
                    return TokenInfo.of(row)
        raise BodhiAPIError(401, "Invalid API token", code="token_invalid")

    def _touch(self, info: TokenInfo, now: float) -> None:
        """Record last use, at most once a minute per token so requests do not all write."""
        if now - self._last_used_written.get(info.id, -_LAST_USED_EVERY) < _LAST_USED_EVERY:
            return
        self._last_used_written[info.id] = now
        from ..store.tables import api_tokens as t
        with self.database.begin() as conn:
            conn.execute(t.update().where(t.c.id == info.id)
                         .values(last_used_at=datetime.now(timezone.utc)))


def _row_of(conn, token_id: str):
    """The token's row, or None."""
    from sqlalchemy import select

    from ..store.tables import api_tokens as t
    return conn.execute(select(t).where(t.c.id == token_id)).first()
