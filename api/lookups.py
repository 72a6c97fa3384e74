"""The audited reads of the API: a student's scores and a page of a cohort, on either store.

Each query is defined once, in `risk_model.store` (`student_query`, `cohort_page`). On
PostgreSQL a student lookup and its audit row are one statement, run here through psycopg's
async pool (no worker thread, one round trip) as SQL compiled from that same statement. On
SQLite the lookup only reads and its audit row goes to `AuditWriter` (`api.audit`), so a long
write transaction never makes a lookup wait.

A score stored without factors (a tier outside `[scoring] factor_tiers`) carries the model's
inputs instead; `explained` computes its factors with the model version that scored it and keeps
them in the store in place of the inputs, so the next lookup is a plain read. Keeping them never
waits: a row a re-score holds is skipped (PostgreSQL), a busy SQLite store is not written.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

from api.audit import AuditWriter
from api.champions import Champions
from risk_model import store

log = logging.getLogger(__name__)

_SHAPES = [(c, p) for c in (False, True) for p in (False, True)]


def _compiled(cohort: bool, point: bool) -> tuple[str, dict]:
    compiled = store.student_query(cohort=cohort, point=point, audited=True).compile(dialect=pg_psycopg.dialect())
    return compiled.string, dict(compiled.params)  # the params hold the literal action ('risk')


_PG_LOOKUP = {shape: _compiled(*shape) for shape in _SHAPES}
# the names of what the lookup selects, in its order (the rows come back as plain tuples)
_LOOKUP_COLUMNS = tuple(c.name for c in store.student_query(cohort=False, point=False, audited=True).selected_columns)


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


def pending(rows: list[dict]) -> bool:
    """Whether any of these stored scores still lacks its factors (it carries the model's inputs)."""
    return any(r.get("inputs") is not None for r in rows)


async def explained(engine: Engine, champions: Champions, audit: AuditWriter, rows: list[dict]) -> list[dict]:
    """`rows` (stored scores) with the factors of those stored without them computed now and kept in the store."""
    if not pending(rows):
        return rows
    return await run_in_threadpool(explain_and_keep, engine, champions, audit, rows)


def explain_and_keep(engine: Engine, champions: Champions, audit: AuditWriter, rows: list[dict]) -> list[dict]:
    """`explained`, in a worker thread: TreeSHAP of a few rows and one UPDATE."""
    from risk_model.score import explain_inputs

    out, found = [], []
    for r in rows:
        if r.get("inputs") is None:
            out.append(r)
            continue
        bundle = champions.version(r["point"], r["model_version"])
        factors = explain_inputs(bundle, [r["inputs"]])[0] if bundle is not None else []
        out.append({**r, "factors": factors, "inputs": None})
        if bundle is not None:
            found.append({"id": r["id"], "factors": factors})
    if found:
        try:
            if engine.dialect.name == "postgresql":
                with engine.begin() as conn:
                    store.save_factors(conn, found)
            else:
                audit.write_if_free(lambda conn: store.save_factors(conn, found))
        except Exception as exc:  # keeping them is an optimisation: the answer stands without it
            log.warning("Factors computed on lookup were not kept (%s)", type(exc).__name__)
    return out
