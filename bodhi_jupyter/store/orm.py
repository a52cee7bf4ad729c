"""ORM tables. The schema itself is owned by the Alembic migrations in ``migrations/``."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """The default of every timestamp column. Those columns are nullable in the migrated
    schema (no migration made them NOT NULL) and say so here, so that the models match it
    (tests/store/test_migrations.py); the ORM always fills them."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelAlias(Base):
    """A name bound to a model file plus request defaults and engine options.

    ``source`` is ``config`` for aliases mirrored from traitlets config (rewritten at every
    start) and ``api`` for ones created at run time, which config never touches.
    """

    __tablename__ = "model_aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    model: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # None: a router
    #: a router alias: model names tried in order (local or remote); None for a plain alias
    targets: Mapped[list | None] = mapped_column(JSON, nullable=True)
    request_defaults: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    server_options: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow, onupdate=utcnow
    )


class ApiToken(Base):
    """A bodhi API token. Only a prefix (for lookup and display) and the SHA-256 of the whole
    token are stored: a copy of the database yields no usable token."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    hashed: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    #: the owner's JupyterHub groups when the token was minted: group roles apply to tokens
    groups: Mapped[list | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: a kernel's own credential (auth/kernel_tokens.py): the kernel it was handed to, the
    #: server that started it (to revoke what a stopped server left) and the notebook
    kernel_id: Mapped[str | None] = mapped_column(String(64))
    kernel_server: Mapped[str | None] = mapped_column(String(255), index=True)
    notebook: Mapped[str | None] = mapped_column(String(1024))


class Setting(Base):
    """A setting changed at run time; it overrides config until deleted."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[object] = mapped_column(JSON, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow,
                                                 onupdate=utcnow)


class UsageRecord(Base):
    """One inference request: who, with which token and model, how many tokens, how long."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    token_id: Mapped[str | None] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(1024), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(32), nullable=False)
    stream: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    #: the notebook whose kernel made the request (its kernel token's), else None
    notebook: Mapped[str | None] = mapped_column(String(1024))


class UsageGroup(Base):
    """A JupyterHub group of the caller of a usage record (``group_by=group``): a record
    of a user in two groups counts in both."""

    __tablename__ = "usage_groups"

    usage_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("usage_records.id", ondelete="CASCADE"), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class Conversation(Base):
    """A person's chat in the panel. ``title_auto`` until the person renames it: the title
    then comes from the first exchange."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    title_auto: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    model: Mapped[str | None] = mapped_column(String(1024))
    #: per-conversation request parameters (system_prompt, temperature, ...); unset = alias default
    params: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow,
                                                 index=True)


class ConversationMessage(Base):
    """One message. ``parent_id`` makes a tree: an edit or a regeneration is a sibling, so
    no earlier answer is lost. ``status`` says whether a reply ended or was cut off."""

    __tablename__ = "conversation_messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False,
        index=True)
    parent_id: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    model: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="complete")
    #: prompt/completion tokens, tokens per second, time to first token, error text
    stats: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)


class ModelPull(Base):
    """A download of a GGUF (all parts of a split one) from the Hugging Face hub. ``parts``
    holds what the hub said of each file (size, etag, commit, URL), so that a retry or a
    restart finds the partial files; ``error`` is ``{message, type, code}``."""

    __tablename__ = "pulls"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    repo: Mapped[str] = mapped_column(String(255), nullable=False)
    filename: Mapped[str] = mapped_column(String(1024), nullable=False)
    revision: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    bytes_done: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    files: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    parts: Mapped[list | None] = mapped_column(JSON)
    model_id: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[dict | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow,
                                                 index=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)
class Upstream(Base):
    """A remote OpenAI-compatible server. The API key is stored Fernet-encrypted only; its
    key lives outside the database (models/upstreams.py)."""

    __tablename__ = "upstreams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    base_url: Mapped[str] = mapped_column(String(2048), nullable=False)
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    #: the models it serves as configured; None: asked from its GET /models
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    prefix: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=True, default=utcnow,
                                                 onupdate=utcnow)


class AuditRecord(Base):
    """One change an admin may need to account for: who, when, from where, through which
    credential (never the credential itself), what and to what. Written by audit.AuditLog."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    #: "jupyter", "hub" or "bodhi_token:<token id>"
    via: Mapped[str] = mapped_column(String(64), nullable=False)
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str | None] = mapped_column(String(1024))
    details: Mapped[dict | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
