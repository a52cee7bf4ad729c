"""The tables, as SQLAlchemy Core ``Table`` objects. The schema itself is owned by the Alembic
migrations in ``migrations/``; tests/store/test_migrations.py checks that these match it.

Core, not the ORM: the stores read rows and write statements, and need no identity map or
unit of work, and the ORM's import, mapped classes and their set-up stay out of the server's
memory (what the extension adds once its storage is open, as ``make bench`` printed it:
+24.8 MiB with the ORM at 7ac762a, +17.7 MiB with Core at 88984ee).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Integer,
                        MetaData, String, Table, Text)


def utcnow() -> datetime:
    """The default of every timestamp column. Those columns are nullable in the migrated
    schema (no migration made them NOT NULL) and say so here, so that the tables match it;
    an insert always fills them."""
    return datetime.now(timezone.utc)


def _stamp(name: str, **kwargs) -> Column:
    """A ``created_at``-style column: timezone-aware, nullable, now by default."""
    return Column(name, DateTime(timezone=True), nullable=True, default=utcnow, **kwargs)


metadata = MetaData()

#: A name bound to a model file plus request defaults and engine options. ``source`` is
#: ``config`` for aliases mirrored from traitlets config (rewritten at every start) and
#: ``api`` for ones created at run time, which config never touches.
model_aliases = Table(
    "model_aliases", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), unique=True, nullable=False),
    Column("model", String(1024), nullable=True),  # None: a router
    #: a router alias: model names tried in order (local or remote); None for a plain alias
    Column("targets", JSON, nullable=True),
    Column("request_defaults", JSON, nullable=False, default=dict),
    Column("server_options", JSON, nullable=False, default=dict),
    Column("source", String(16), nullable=False, default="api"),
    _stamp("created_at"),
    _stamp("updated_at", onupdate=utcnow),
)

#: A bodhi API token. Only a prefix (for lookup and display) and the SHA-256 of the whole
#: token are stored: a copy of the database yields no usable token.
api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("prefix", String(16), nullable=False, index=True),
    Column("hashed", String(64), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),
    Column("models", JSON, nullable=True),
    #: the owner's JupyterHub groups when the token was minted: group roles apply to tokens
    Column("groups", JSON, nullable=True),
    Column("status", String(16), nullable=False, default="active"),
    _stamp("created_at"),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    #: a kernel's own credential (auth/kernel_tokens.py): the kernel it was handed to, the
    #: server that started it (to revoke what a stopped server left) and the notebook
    Column("kernel_id", String(64), nullable=True),
    Column("kernel_server", String(255), nullable=True, index=True),
    Column("notebook", String(1024), nullable=True),
)

#: A setting changed at run time; it overrides config until deleted.
settings = Table(
    "settings", metadata,
    Column("key", String(255), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("updated_by", String(255), nullable=True),
    _stamp("updated_at", onupdate=utcnow),
)

#: One inference request: who, with which token and model, how many tokens, how long.
usage_records = Table(
    "usage_records", metadata,
    Column("id", Integer, primary_key=True),
    _stamp("at", index=True),
    Column("user", String(255), nullable=False, index=True),
    Column("token_id", String(32), nullable=True, index=True),
    Column("model", String(1024), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("stream", Boolean, nullable=False, default=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("duration_ms", Float, nullable=False, default=0.0),
    Column("status", Integer, nullable=False),
    #: the notebook whose kernel made the request (its kernel token's), else None
    Column("notebook", String(1024), nullable=True),
)

#: A JupyterHub group of the caller of a usage record (``group_by=group``): a record of a
#: user in two groups counts in both.
usage_groups = Table(
    "usage_groups", metadata,
    Column("usage_id", Integer, ForeignKey("usage_records.id", ondelete="CASCADE"),
           primary_key=True),
    Column("group_name", String(255), primary_key=True, index=True),
)

#: A person's chat in the panel. ``title_auto`` until the person renames it: the title then
#: comes from the first exchange.
conversations = Table(
    "conversations", metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("title", String(255), nullable=False, default=""),
    Column("title_auto", Boolean, nullable=False, default=True),
    Column("model", String(1024), nullable=True),
    #: per-conversation request parameters (system_prompt, temperature, ...); unset = alias
    #: default
    Column("params", JSON, nullable=False, default=dict),
    _stamp("created_at"),
    _stamp("updated_at", index=True),
)

#: One message. ``parent_id`` makes a tree: an edit or a regeneration is a sibling, so no
#: earlier answer is lost. ``status`` says whether a reply ended or was cut off.
conversation_messages = Table(
    "conversation_messages", metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("parent_id", String(32), nullable=True),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False, default=""),
    Column("model", String(1024), nullable=True),
    Column("status", String(16), nullable=False, default="complete"),
    #: prompt/completion tokens, tokens per second, time to first token, error text
    Column("stats", JSON, nullable=True),
    _stamp("created_at"),
    _stamp("updated_at"),
)

#: A download of a GGUF (all parts of a split one) from the Hugging Face hub. ``parts``
#: holds what the hub said of each file (size, etag, commit, URL), so that a retry or a
#: restart finds the partial files; ``error`` is ``{message, type, code}``.
pulls = Table(
    "pulls", metadata,
    Column("id", String(32), primary_key=True),
    Column("repo", String(255), nullable=False),
    Column("filename", String(1024), nullable=False),
    Column("revision", String(255), nullable=True),
    Column("state", String(16), nullable=False, index=True),
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("bytes_total", BigInteger, nullable=True),
    Column("files", JSON, nullable=False, default=list),
    Column("parts", JSON, nullable=True),
    Column("model_id", String(1024), nullable=True),
    Column("error", JSON, nullable=True),
    Column("created_by", String(255), nullable=True),
    _stamp("created_at", index=True),
    _stamp("updated_at"),
)

#: A remote OpenAI-compatible server. The API key is stored Fernet-encrypted only; its key
#: lives outside the database (models/upstreams.py).
upstreams = Table(
    "upstreams", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), unique=True, nullable=False),
    Column("base_url", String(2048), nullable=False),
    Column("api_key_encrypted", Text, nullable=True),
    #: the models it serves as configured; None: asked from its GET /models
    Column("models", JSON, nullable=True),
    Column("prefix", String(255), nullable=True),
    _stamp("created_at"),
    _stamp("updated_at", onupdate=utcnow),
)

#: One change an admin may need to account for: who, when, from where, through which
#: credential (never the credential itself), what and to what. Written by audit.AuditLog.
audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, default=utcnow, index=True),
    Column("actor", String(255), nullable=False, index=True),
    #: "jupyter", "hub" or "bodhi_token:<token id>"
    Column("via", String(64), nullable=False),
    Column("address", String(64), nullable=True),
    Column("action", String(64), nullable=False, index=True),
    Column("target", String(1024), nullable=True),
    Column("details", JSON, nullable=True),
    Column("request_id", String(64), nullable=True),
)
