"""The advisor's loop in the store: alerts (with their webhook batches), interventions, a student's history.

`write_alerts` replaces a (cohort, point)'s alerts and queues their webhook batches in one
transaction: re-scoring the same point never duplicates alerts, and a batch is queued exactly
when its alerts are stored. Intervention notes are stored for the advising tools that wrote
them; nothing here logs them, and the follow-up reads (`cohort_interventions`) leave them out.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
from sqlalchemy import Engine, delete, insert, or_, select

from risk_model import outbox
from risk_model.alerts import ALERT_COLUMNS
from risk_model.store import _chunks, alerts, interventions, scores

KINDS = ("call", "email", "meeting", "referral", "other")
# what an alert page shows: the stored alert without its cohort (the page is of one cohort), with its time
ALERT_PAGE_COLUMNS = [c for c in ALERT_COLUMNS if c != "cohort"] + ["created_at"]


def earlier_scores(engine: Engine, cohort: str, points: list[str]) -> pd.DataFrame:
    """The scores of `cohort` at `points` (student_id, point, probability, tier)."""
    cols = [scores.c.student_id, scores.c.point, scores.c.probability, scores.c.tier]
    if not points:
        return pd.DataFrame(columns=[c.name for c in cols])
    q = select(*cols).where(scores.c.cohort == cohort, scores.c.point.in_(points))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).all(), columns=[c.name for c in cols])


def write_alerts(
    engine: Engine, cohort: str, point: str, frame: pd.DataFrame, *, batch_size: int = 500, now: datetime | None = None
) -> dict:
    """Replace the alerts of (cohort, point) with `frame` (`risk_model.alerts.compute_alerts`) and queue
    them for every webhook subscriber, in one transaction. No alerts: nothing is queued."""
    now = now or datetime.now(UTC)
    rows = frame[ALERT_COLUMNS].to_dict("records")
    for r in rows:
        r["created_at"] = now
        for k in ("previous_probability", "probability", "rise"):
            r[k] = float(r[k])
    sent = [{k: v for k, v in r.items() if k not in ("cohort", "created_at")} for r in rows]
    bodies = outbox.payloads(cohort, point, sent, created_at=now, batch_size=batch_size) if rows else []
    counts = [len(sent[i : i + batch_size]) for i in range(0, len(sent), batch_size)]
    with engine.begin() as conn:
        conn.execute(delete(alerts).where(alerts.c.cohort == cohort, alerts.c.point == point))
        for chunk in _chunks(rows):
            conn.execute(insert(alerts), chunk)
        queued = outbox.enqueue(conn, cohort, point, list(zip(counts, bodies, strict=True)), now)
    return {"n_alerts": len(rows), "webhook_rows_queued": queued}


def alert_page(
    engine: Engine,
    cohort: str,
    *,
    limit: int,
    point: str | None = None,
    after: tuple[datetime, float, str] | None = None,
) -> list[dict]:
    """One page of a cohort's alerts: newest first, then largest rise, ties by student id; `after` is
    (created_at, rise, student_id) of the previous page's last row."""
    q = select(*[alerts.c[n] for n in ALERT_PAGE_COLUMNS]).where(alerts.c.cohort == cohort)
    if point is not None:
        q = q.where(alerts.c.point == point)
    if after is not None:
        at, rise, sid = after
        q = q.where(
            alerts.c.created_at <= at,
            or_(
                alerts.c.created_at < at,
                alerts.c.rise < rise,
                (alerts.c.rise == rise) & (alerts.c.student_id > sid),
            ),
        )
    q = q.order_by(alerts.c.created_at.desc(), alerts.c.rise.desc(), alerts.c.student_id).limit(limit)
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(q)]


def cohort_alerts(engine: Engine, cohort: str) -> pd.DataFrame:
    """Every alert of a cohort (for follow-up and the reports index)."""
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.cohort == cohort)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in alerts.columns])


def alert_counts(engine: Engine) -> list[dict]:
    """Per (cohort, point): how many alerts, how many per rule, and when they were made."""
    from sqlalchemy import func

    q = select(alerts.c.cohort, alerts.c.point, alerts.c.kinds, func.count(), func.max(alerts.c.created_at)).group_by(
        alerts.c.cohort, alerts.c.point, alerts.c.kinds
    )
    out: dict[tuple[str, str], dict] = {}
    with engine.connect() as conn:
        for cohort, point, kinds, n, at in conn.execute(q):
            entry = out.setdefault(
                (cohort, point),
                {
                    "cohort": cohort,
                    "point": point,
                    "n_alerts": 0,
                    "by_rule": {"high": 0, "rise": 0, "inactive": 0},
                    "created_at": at,
                },
            )
            entry["n_alerts"] += n
            entry["created_at"] = max(entry["created_at"], at)
            for kind in kinds.split(","):
                entry["by_rule"][kind] = entry["by_rule"].get(kind, 0) + n
    return list(out.values())


def add_intervention(
    engine: Engine,
    student_id: str,
    *,
    kind: str,
    on_date: date,
    staff_id: str,
    key_id: int,
    note: str | None = None,
    cohort: str | None = None,
    audit: dict | None = None,
) -> dict:
    """Record what an advisor did for a student (and, given `audit`, its audit row in the same transaction)."""
    if kind not in KINDS:
        raise ValueError(f"intervention kind {kind!r} is not one of {list(KINDS)}")
    row = {
        "student_id": student_id,
        "cohort": cohort,
        "kind": kind,
        "on_date": on_date,
        "staff_id": staff_id,
        "note": note,
        "key_id": key_id,
        "recorded_at": datetime.now(UTC),
    }
    from risk_model.store import audit_log

    level = "READ COMMITTED" if engine.dialect.name == "postgresql" else "SERIALIZABLE"
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level=level)  # one transaction, also on the API's autocommit engine
        with conn.begin():
            row["id"] = conn.execute(insert(interventions).values(row).returning(interventions.c.id)).scalar_one()
            if audit is not None:
                conn.execute(insert(audit_log), audit)
    return row


def student_history(engine: Engine, student_id: str) -> dict[str, list[dict]]:
    """A student's scores at every point, alerts and interventions (with notes: for the advising tool)."""
    with engine.connect() as conn:
        s = conn.execute(
            select(*[scores.c[n] for n in ("cohort", "point", "probability", "tier", "rank", "factors")])
            .add_columns(scores.c.model_version, scores.c.scored_at, scores.c.id, scores.c.inputs)
            .where(scores.c.student_id == student_id)
        ).all()
        a = conn.execute(
            select(alerts.c.cohort, *[alerts.c[n] for n in ALERT_PAGE_COLUMNS if n != "student_id"])
            .where(alerts.c.student_id == student_id)
            .order_by(alerts.c.created_at.desc())
        ).all()
        i = conn.execute(
            select(interventions)
            .where(interventions.c.student_id == student_id)
            .order_by(interventions.c.on_date.desc(), interventions.c.id.desc())
        ).all()
    return {
        "scores": [r._asdict() for r in s],
        "alerts": [r._asdict() for r in a],
        "interventions": [r._asdict() for r in i],
    }


def cohort_interventions(engine: Engine, cohort: str, student_ids: list[str] | None = None) -> pd.DataFrame:
    """Interventions of a cohort's students (student_id, kind, on_date): never the note."""
    cols = [interventions.c.student_id, interventions.c.kind, interventions.c.on_date]
    q = select(*cols).where(or_(interventions.c.cohort == cohort, interventions.c.cohort.is_(None)))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(q).all(), columns=["student_id", "kind", "on_date"])
    if student_ids is not None:
        frame = frame[frame.student_id.isin(set(student_ids))]
    return frame.reset_index(drop=True)
