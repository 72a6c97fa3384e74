"""The API's hot path on PostgreSQL: a student lookup and its audit row in one async round trip.

The same query as `risk_model.store.student_scores`, written as raw SQL for psycopg's async
pool: no SQLAlchemy execution machinery, no hop to a worker thread.
"""

from __future__ import annotations

from sqlalchemy import Engine

_PG_LOOKUP = """
WITH audit AS (
    INSERT INTO audit_log (key_id, action, student_id, cohort, point, at)
    VALUES (%(key_id)s, 'risk', %(student_id)s, %(cohort)s, %(point)s, now())
)
SELECT cohort, point, probability, tier, rank, factors, model_version, scored_at
FROM scores
WHERE student_id = %(student_id)s
  AND (%(cohort)s::varchar IS NULL OR cohort = %(cohort)s)
  AND (%(point)s::varchar IS NULL OR point = %(point)s)
"""
_LOOKUP_COLUMNS = ("cohort", "point", "probability", "tier", "rank", "factors", "model_version", "scored_at")


async def open_lookup_pool(engine: Engine, *, size: int = 8, durable_audit: bool = True):
    """An async psycopg pool to the engine's PostgreSQL database (autocommit), or None for other stores."""
    if engine.dialect.name != "postgresql":
        return None
    from psycopg_pool import AsyncConnectionPool

    _, kwargs = engine.dialect.create_connect_args(engine.url)

    async def configure(conn) -> None:
        if not durable_audit:
            await conn.execute("SET synchronous_commit TO off")

    pool = AsyncConnectionPool(
        kwargs={**kwargs, "autocommit": True, "prepare_threshold": 0},
        min_size=2,
        max_size=size,
        configure=configure,
        open=False,
        timeout=10,
    )
    await pool.open(wait=True, timeout=10)
    return pool


async def student_scores_async(
    pool, student_id: str, *, key_id: int, cohort: str | None = None, point: str | None = None
) -> list[dict]:
    """`student_scores` on PostgreSQL through `open_lookup_pool`'s pool: one round trip."""
    params = {"student_id": student_id, "cohort": cohort, "point": point, "key_id": key_id}
    async with pool.connection() as conn:
        cur = await conn.execute(_PG_LOOKUP, params)
        rows = await cur.fetchall()
    return [dict(zip(_LOOKUP_COLUMNS, r, strict=True)) for r in rows]
