"""Reading back the usage records a test's requests wrote."""

from __future__ import annotations

from sqlalchemy import select

from bodhi_jupyter.store.orm import UsageRecord


async def usage_rows(bodhi_app, endpoint: str) -> list[UsageRecord]:
    await bodhi_app.usage.flush()
    with bodhi_app.database.session() as s:
        return list(s.scalars(select(UsageRecord).where(UsageRecord.endpoint == endpoint)
                              .order_by(UsageRecord.id)))
