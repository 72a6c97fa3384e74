"""The audited reads of the API: a student's scores and a page of a cohort, on either store.

Each query is defined once, in `risk_model.store` (`student_query`, `cohort_page`). On
PostgreSQL a student lookup and its audit row are one statement, run here through psycopg's
async pool (no worker thread, one round trip) as SQL compiled from that same statement. On
SQLite the lookup only reads and its audit row goes to `AuditWriter` (`api.audit`), so a long
write transaction never makes a lookup wait.
"""

from __future__ import annotations

from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

from api.audit import AuditWriter
from risk_model import store

_SHAPES = [(c, p) for c in (False, True) for p in (False, True)]


def _compiled(cohort: bool, point: bool) -> tuple[str, dict]:
    compiled = store.student_query(cohort=cohort, point=point, audited=True).compile(dialect=pg_psycopg.dialect())
    return compiled.string, dict(compiled.params)  # the params hold the literal action ('risk')


_PG_LOOKUP = {shape: _compiled(*shape) for shape in _SHAPES}
_LOOKUP_COLUMNS = ("cohort", "point", "probability", "tier", "rank", "factors", "model_version", "scored_at")


async def open_lookup_pool(engine: Engine, *, size: int = 8, durable_audit: bool = True) -> Any:
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
    pool: Any, student_id: str, *, key_id: int, cohort: str | None = None, point: str | None = None
) -> list[dict]:
    """`store.student_scores` on PostgreSQL through `open_lookup_pool`'s pool: one round trip."""
    sql, defaults = _PG_LOOKUP[(cohort is not None, point is not None)]
    params = {**defaults, **store.lookup_params(student_id, key_id=key_id, cohort=cohort, point=point)}
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        rows = await cur.fetchall()
    return [dict(zip(_LOOKUP_COLUMNS, r, strict=True)) for r in rows]


async def student_scores(
    engine: Engine,
    pool: Any,
    audit: AuditWriter,
    student_id: str,
    *,
    key_id: int,
    cohort: str | None,
    point: str | None,
) -> list[dict]:
    """A student's stored scores, the lookup audited (whether or not a score is found)."""
    if pool is not None:
        return await student_scores_async(pool, student_id, key_id=key_id, cohort=cohort, point=point)
    return await run_in_threadpool(_read_then_audit, engine, audit, student_id, key_id, cohort, point)


def _read_then_audit(
    engine: Engine, audit: AuditWriter, student_id: str, key_id: int, cohort: str | None, point: str | None
) -> list[dict]:
    rows = store.student_scores(engine, student_id, key_id=None, cohort=cohort, point=point)
    audit.record(store.audit_log, [store.audit_row(key_id, "risk", student_id, cohort, point)])
    return rows


def cohort_page(
    engine: Engine, audit: AuditWriter, cohort: str, point: str, *, key_id: int, **filters: Any
) -> list[dict]:
    """One page of a cohort (`store.cohort_page`), each student returned audited."""
    if engine.dialect.name == "postgresql":
        return store.cohort_page(engine, cohort, point, key_id=key_id, **filters)
    rows = store.cohort_page(engine, cohort, point, key_id=None, **filters)
    audit.record(store.audit_log, [store.audit_row(key_id, "list", r["student_id"], cohort, point) for r in rows])
    return rows


def audit_now(engine: Engine, audit: AuditWriter, rows: list[dict]) -> None:
    """Audit rows of a read: written at once on PostgreSQL, through the non-blocking writer on SQLite."""
    if not rows:
        return
    if engine.dialect.name == "postgresql":
        store.write_audit(engine, store.audit_log, rows)
    else:
        audit.record(store.audit_log, rows)
