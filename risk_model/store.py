"""The score store: SQLAlchemy 2, a SQLite file by default, PostgreSQL by URL.

Writing a cohort's scores is one transaction that first deletes that cohort's previous
scores for the same prediction point, so re-scoring replaces and a failure half-way
leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
)

metadata = MetaData()

scores = Table(
    "scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cohort", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("student_id", String(128), nullable=False),
    Column("probability", Float, nullable=False),
    Column("tier", String(16), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("factors", JSON, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("cohort", "point", "student_id", name="uq_scores_cohort_point_student"),
    Index("ix_scores_student", "student_id", "scored_at"),
    Index("ix_scores_cohort_rank", "cohort", "point", "rank"),
)

score_runs = Table(
    "score_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cohort", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("n_students", Integer, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("cohort", "point", name="uq_score_runs_cohort_point"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cohort", String(64), nullable=False),
    Column("student_id", String(128), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("at_risk", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("cohort", "student_id", name="uq_outcomes_cohort_student"),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def connect(url: str) -> Engine:
    """An engine for `url` with the schema in place (created if missing)."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    return engine


def _chunks(rows: list[dict], size: int = 10_000) -> Iterator[list[dict]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def write_scores(engine: Engine, frame: pd.DataFrame, summary: dict) -> int:
    """Replace the scores of every (cohort, point) in `frame` in one transaction."""
    rows = frame[
        ["cohort", "point", "student_id", "probability", "tier", "rank", "factors", "model_version", "scored_at"]
    ].to_dict("records")
    for r in rows:
        r["scored_at"] = pd.Timestamp(r["scored_at"]).to_pydatetime()
        r["rank"] = int(r["rank"])
        r["probability"] = float(r["probability"])
    keys = frame[["cohort", "point"]].drop_duplicates().itertuples(index=False)
    with engine.begin() as conn:
        for cohort, point in keys:
            conn.execute(delete(scores).where(scores.c.cohort == cohort, scores.c.point == point))
            conn.execute(delete(score_runs).where(score_runs.c.cohort == cohort, score_runs.c.point == point))
            part = frame[(frame.cohort == cohort) & (frame.point == point)]
            conn.execute(
                insert(score_runs),
                {
                    "cohort": cohort,
                    "point": point,
                    "model_version": str(part.model_version.iloc[0]),
                    "n_students": int(len(part)),
                    "summary": json.loads(json.dumps(summary, default=str)),
                    "scored_at": rows[0]["scored_at"],
                },
            )
        for chunk in _chunks(rows):
            conn.execute(insert(scores), chunk)
    return len(rows)


def write_outcomes(engine: Engine, frame: pd.DataFrame) -> int:
    """Replace the recorded outcomes of the students in `frame` (cohort, student_id, outcome, at_risk)."""
    now = datetime.now(UTC)
    rows = [
        {"cohort": str(r.cohort), "student_id": str(r.student_id), "outcome": str(r.outcome), "at_risk": int(r.at_risk), "recorded_at": now}
        for r in frame.itertuples(index=False)
    ]
    with engine.begin() as conn:
        for cohort in frame.cohort.astype(str).unique():
            conn.execute(delete(outcomes).where(outcomes.c.cohort == cohort))
        for chunk in _chunks(rows):
            conn.execute(insert(outcomes), chunk)
    return len(rows)


def read_scores(engine: Engine, cohort: str, point: str | None = None) -> pd.DataFrame:
    """All scores of a cohort (optionally one prediction point), highest risk first."""
    q = select(scores).where(scores.c.cohort == cohort)
    if point is not None:
        q = q.where(scores.c.point == point)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q.order_by(scores.c.point, scores.c.rank)).mappings().all())


def read_outcomes(engine: Engine, cohort: str) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(outcomes).where(outcomes.c.cohort == cohort)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in outcomes.columns])


def export_csv(frame: pd.DataFrame, path) -> None:
    """Scores as a flat CSV: one row per student, factors spelled out."""
    out = frame[["student_id", "cohort", "point", "probability", "tier", "rank", "model_version", "scored_at"]].copy()
    for i in range(3):
        out[f"factor_{i + 1}"] = [
            f"{f[i]['feature']} ({f[i]['direction']} risk)" if len(f) > i else "" for f in frame["factors"]
        ]
    tmp = f"{path}.tmp"
    out.to_csv(tmp, index=False)
    os.replace(tmp, path)
