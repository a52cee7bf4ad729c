"""Reading back the usage records a test's requests wrote."""

from __future__ import annotations

from sqlalchemy import select

from bodhi_jupyter.store.tables import usage_records as u


async def usage_rows(bodhi_app, endpoint: str) -> list:
    await bodhi_app.usage.flush()
    with bodhi_app.database.read() as conn:
        return conn.execute(select(u).where(u.c.endpoint == endpoint)
                            .order_by(u.c.id)).all()
