"""ORM tables. The schema itself is owned by the Alembic migrations in ``migrations/``."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
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
    model: Mapped[str] = mapped_column(String(1024), nullable=False)
    request_defaults: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    server_options: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
