"""The score store: SQLAlchemy 2, a SQLite file by default, PostgreSQL by URL.

Writing a cohort's scores is one transaction that first deletes that cohort's previous
scores for the same prediction point, so re-scoring replaces and a failure half-way
leaves the store exactly as it was. A file with only some of a stored cohort's students
is refused unless the caller chooses to merge them into the cohort or to replace it; the
same holds for a cohort's recorded outcomes (`write_outcomes`).

Statement parameters (student ids, probabilities) never appear in error messages: engines
hide them, and a job step's database errors surface as `StoreError` naming the store and the
fix, without the driver's detail lines (PostgreSQL puts row values there).

The schema belongs to Alembic (`risk_model/migrations`): `upgrade` (`student-risk db upgrade`,
a deploy step) brings a store up to date under a lock (a PostgreSQL advisory lock; a lock file
beside a SQLite file), so two processes starting at once migrate it once; `connect` only checks
the revision and refuses a store that is behind. The tables below mirror the migrations and
queries are built from them; a test checks that the two agree.

The API reads through the functions at the end, each one indexed query; on PostgreSQL a
student lookup and its audit row are a single statement (one round trip).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    column,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from risk_model.private import FILE_MODE, private_file

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK_KEY = 7_261_540_031  # any constant; every process migrating a database takes the same one
_PG_COHORT_LOCK_CLASS = 7261  # with hashtext(cohort/point): writers of one cohort take turns

Partial = Literal["refuse", "merge", "replace"]


class StoreError(RuntimeError):
    """The score store failed (unreachable, went down, refused a write). The message names the store
    and the fix, never row values; `transient` is True for connection-level failures worth a retry."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class PartialCohortError(ValueError):
    """A file with only some of a stored cohort's students, written without choosing merge or replace."""


class UnscoredCohortError(ValueError):
    """Outcomes for a cohort the store has no scores of."""


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
    # migration 0004: the model input of a student whose factors are not computed yet ({"n", "values"},
    # `score.pending_inputs`); replaced by the factors when first read (`save_factors`). NULL: factors stored.
    Column("inputs", JSON(none_as_null=True), nullable=True),
    UniqueConstraint("cohort", "point", "student_id", name="uq_scores_cohort_point_student"),
    Index("ix_scores_student", "student_id", "scored_at"),
    Index("ix_scores_cohort_rank", "cohort", "point", "rank"),
)
# keyset pagination "highest risk first, ties by student id", with and without a tier filter
Index("ix_scores_cohort_risk", scores.c.cohort, scores.c.point, scores.c.probability.desc(), scores.c.student_id)
Index(
    "ix_scores_cohort_tier_risk",
    scores.c.cohort,
    scores.c.point,
    scores.c.tier,
    scores.c.probability.desc(),
    scores.c.student_id,
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

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),  # sha256 hex of the key; the key itself is never stored
    Column("prefix", String(16), nullable=False),  # first characters, to tell keys apart in `keys list`
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("key_hash", name="uq_api_keys_hash"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("key_id", Integer, ForeignKey("api_keys.id", name="fk_audit_log_key"), nullable=False),
    Column("action", String(16), nullable=False),
    Column("student_id", String(128), nullable=False),
    Column("cohort", String(64), nullable=True),
    Column("point", String(64), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_audit_log_student", "student_id", "at"),
)

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("reason", String(32), nullable=False),  # missing, unknown, scope
    Column("route", String(128), nullable=False),  # the route template: never a student id
    Column("key_prefix", String(16), nullable=True),  # the first characters at most; never the key
    Index("ix_auth_failures_at", "at"),
)


# --- closing the advisor's loop (migration 0003): alerts, interventions, webhook outbox --------

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("cohort", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("student_id", String(128), nullable=False),
    Column("previous_point", String(64), nullable=False),
    Column("previous_probability", Float, nullable=False),
    Column("probability", Float, nullable=False),
    Column("previous_tier", String(16), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("rise", Float, nullable=False),
    Column("kinds", String(64), nullable=False),  # high,rise,inactive
    Column("reason", String(1000), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("cohort", "point", "student_id", name="uq_alerts_cohort_point_student"),
    Index("ix_alerts_student", "student_id"),
)
# keyset pagination "newest first, then largest rise, ties by student id"
Index("ix_alerts_cohort_page", alerts.c.cohort, alerts.c.created_at.desc(), alerts.c.rise.desc(), alerts.c.student_id)

interventions = Table(
    "interventions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("student_id", String(128), nullable=False),
    Column("cohort", String(64), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("on_date", Date, nullable=False),
    Column("staff_id", String(128), nullable=False),  # opaque: whoever the advising tool says acted
    Column("note", String(500), nullable=True),  # never in a report or a log
    Column("key_id", Integer, ForeignKey("api_keys.id", name="fk_interventions_key"), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_interventions_student", "student_id", "on_date"),
    Index("ix_interventions_cohort", "cohort"),
)

webhook_subscribers = Table(
    "webhook_subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("secret", String(128), nullable=False),  # needed to sign each body; never logged or listed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True), nullable=True),
)

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("webhook_subscribers.id", name="fk_webhook_outbox_subscriber"),
        nullable=False,
    ),
    Column("delivery_id", String(36), nullable=False),  # sent as X-Student-Risk-Delivery: the same on every retry
    Column("cohort", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("n_alerts", Integer, nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes signed and sent (UTF-8 JSON)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("last_error", String(200), nullable=True),
    UniqueConstraint("delivery_id", name="uq_webhook_outbox_delivery"),
    Index("ix_webhook_outbox_pending", "delivered_at", "subscriber_id", "id"),
    Index("ix_webhook_outbox_cohort_point", "cohort", "point"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("outbox_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(200), nullable=True),  # an exception class or HTTP status: never the body
    Column("seconds", Float, nullable=False),
    Index("ix_webhook_deliveries_outbox", "outbox_id"),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL: still atomic and consistent, no fsync per commit
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _async_commit(dbapi_conn, _record) -> None:
    """Commits on this connection return before the WAL reaches disk (the audit rows)."""
    cur = dbapi_conn.cursor()
    cur.execute("SET synchronous_commit TO off")
    cur.close()
    dbapi_conn.commit()


PLACEHOLDER_PASSWORDS = frozenset({"change-me", "changeme"})  # what templates ship, refused at start


def _engine(url: str, *, serving: bool = False, durable_audit: bool = True) -> Engine:
    password = make_url(url).password
    if password is not None and str(password).strip().lower() in PLACEHOLDER_PASSWORDS:
        raise StoreError(
            f"The store's database password is the placeholder {str(password)!r}: set a real one "
            "(docker/.env POSTGRES_PASSWORD, e.g. `openssl rand -hex 24`) before starting."
        )
    options: dict = {"pool_pre_ping": not serving, "hide_parameters": True}  # no student ids in error text
    if serving:
        options["isolation_level"] = "AUTOCOMMIT"
        if not url.startswith("sqlite"):
            options.update(pool_size=5, max_overflow=5)  # + the lookup pool's 8: 18 connections per API worker
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        if engine.url.database and engine.url.database != ":memory:":
            private_file(engine.url.database)  # 0600 in a 0700 runtime folder; SQLite gives -wal/-shm the same mode
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql" and serving and not durable_audit:
        event.listen(engine, "connect", _async_commit)
    return engine


def connect(url: str, *, serving: bool = False, durable_audit: bool = True) -> Engine:
    """An engine for `url`, once its schema is at the newest migration (it does not migrate).

    A store behind the code raises `StoreError` naming `student-risk db upgrade`, the deploy
    step that migrates it once. A placeholder password (`change-me`) is refused.
    `serving=True` tunes it for the API: statements autocommit (no BEGIN/COMMIT round
    trips), no pre-ping per checkout (a dropped connection fails one request, then the
    pool is refreshed), at most 10 connections.
    With `durable_audit=False` a PostgreSQL commit does not wait for the WAL flush, so an
    audit row written just before a database crash (the last few hundred ms) can be lost.
    """
    engine = _engine(url, serving=serving, durable_audit=durable_audit)
    try:
        found, head = current(engine), _head()
    except Exception:
        engine.dispose()
        raise
    if found != head:
        engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise StoreError(
            f"The score store at {where} is at schema revision {found or 'none (empty)'}, this code needs {head}: "
            "run `student-risk db upgrade` (with the same STUDENT_RISK_STORE_URL) first."
        )
    return engine


def upgrade(url: str) -> str:
    """Migrate the store at `url` to the newest revision under the migration lock; return it.

    The deploy step (`student-risk db upgrade`): the worker's start runs it, the API's only when
    STUDENT_RISK_API_MIGRATE=true. Two processes doing it at once migrate once."""
    engine = _engine(url)
    try:
        return migrate(engine)
    finally:
        engine.dispose()


def _embedded(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


@contextlib.contextmanager
def opened(url: str) -> Iterator[Engine]:
    """`connect(url)` for one job step; the engine's connections are closed when the block ends.

    The embedded SQLite store (the CLI's default, one local file) is migrated here by the job
    step itself; a server database must have been migrated by `student-risk db upgrade`.
    A database error in the block (or while connecting) is raised as `StoreError`."""
    with store_errors(url):
        if _embedded(url):
            upgrade(url)
        engine = connect(url)
        try:
            yield engine
        finally:
            engine.dispose()


def safe_url(url: str) -> str:
    """The store URL without its password, for messages and summaries."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _reason(exc: DBAPIError) -> str:
    """The driver's one-line reason, without PostgreSQL's DETAIL lines (which quote row values)."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(diag, "sqlstate", None)
    if sqlstate and sqlstate.startswith("22"):  # data exceptions quote the offending value
        return f"a value the database refuses (SQLSTATE {sqlstate})"
    lines = str(orig).strip().splitlines()
    primary = getattr(diag, "message_primary", None) or (lines[0] if lines else type(orig).__name__)
    return (primary[:300] + (f" (SQLSTATE {sqlstate})" if sqlstate else "")).strip()


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Raise a database error in the block as `StoreError` (store named, reason, fix; no parameters)."""
    try:
        yield
    except ArgumentError as exc:  # an unparsable URL or an unknown database kind
        raise StoreError(
            f"Score store URL {url.split('@')[-1]!r} cannot be used ({exc}). Fix STUDENT_RISK_STORE_URL, e.g. "
            "postgresql+psycopg://user@host:5432/db, or unset it to use the SQLite file in the runtime folder."
        ) from None
    except DBAPIError as exc:
        transient = isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
        fix = (
            "Check that the database is running and reachable at that URL (STUDENT_RISK_STORE_URL), then run the "
            "step again"
            if transient
            else "Run the step again; if it fails again, check the store's schema and disk space"
        )
        raise StoreError(
            f"Score store {safe_url(url)} failed ({type(exc.orig).__name__}: {_reason(exc)}). "
            f"Nothing of this step was written (its write is one transaction). {fix}.",
            transient=transient,
        ) from None


def _alembic_config():
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the store's migration lock until the block ends."""
    with contextlib.ExitStack() as stack:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        if database and database != ":memory:":
            fh = stack.enter_context(open(private_file(f"{database}.migrate-lock"), "a"))
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        conn = stack.enter_context(engine.connect())
        if engine.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))  # held until commit
        yield conn


@functools.cache  # the migration scripts ship with the code: read them once per process, not at every connect
def _head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations in risk_model/migrations"
    return head


def current(engine: Engine) -> str | None:
    """The store's schema revision, or None for a store never migrated."""
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    """Read directly: alembic's own check logs two INFO lines per connect."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    version = table("alembic_version", column("version_num"))
    return conn.execute(select(version.c.version_num)).scalar()


def revisions(url: str) -> tuple[str | None, str]:
    """(the store's schema revision or None, the newest this code knows): `student-risk db current`."""
    engine = _engine(url)
    try:
        return current(engine), _head()
    finally:
        engine.dispose()


def migrate(engine: Engine) -> str:
    """Upgrade the store to the newest migration (a no-op when it is there); return that revision."""
    from alembic import command

    head = _head()
    # Even the check waits for the lock: on SQLite a first connection switches the file to WAL, which fails
    # ("database is locked") while another process is creating the schema.
    with _migration_lock(engine) as conn:
        if _revision(conn) == head:
            return head
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    return head


def _chunks(rows: list[dict], size: int = 10_000) -> Iterator[list[dict]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


@dataclass
class Written:
    """What `write_scores` did: the rows now stored for the written (cohort, point)s, and per pair
    the action ("new", "replaced", "merged") with its counts."""

    frame: pd.DataFrame
    actions: list[dict] = field(default_factory=list)


_SCORE_COLS = [
    "cohort",
    "point",
    "student_id",
    "probability",
    "tier",
    "rank",
    "factors",
    "model_version",
    "scored_at",
    "inputs",
]


def _with_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with an `inputs` column (None: factors stored), for frames made before it existed."""
    return frame if "inputs" in frame.columns else frame.assign(inputs=None)


def _rows(frame: pd.DataFrame) -> list[dict]:
    rows = _with_inputs(frame)[_SCORE_COLS].to_dict("records")
    for r in rows:
        r["scored_at"] = pd.Timestamp(r["scored_at"]).to_pydatetime()
        r["rank"] = int(r["rank"])
        r["probability"] = float(r["probability"])
        if not isinstance(r["inputs"], dict):  # NaN from a frame that mixes None and dicts
            r["inputs"] = None
    return rows


def _stored_ids(conn: Connection, cohort: str, point: str) -> set[str]:
    q = select(scores.c.student_id).where(scores.c.cohort == cohort, scores.c.point == point)
    return set(conn.execute(q).scalars())


def check_partial(cohort: str, point: str, stored: set[str], new: set[str], partial: Partial) -> None:
    """Refuse (PartialCohortError) a file lacking some of the stored cohort's students, unless `partial`
    says to merge or replace. The message gives counts only, never ids."""
    missing = len(stored - new)
    if partial != "refuse" or not missing:
        return
    raise PartialCohortError(
        f"Cohort {cohort} at prediction point {point!r} has {len(stored)} students with stored scores; this file "
        f"has {len(new)} students ({len(new & stored)} of them stored, {len(new - stored)} new), so {missing} "
        "stored students are not in it. Nothing was written. To update only this file's students and re-rank "
        'the whole cohort, score with --merge (partial="merge"); to replace the cohort\'s scores with only this '
        'file\'s students (deleting the other stored ones), score with --replace (partial="replace").'
    )


def check_scores(engine: Engine, frame: pd.DataFrame, partial: Partial = "refuse") -> None:
    """The partial-cohort check of `write_scores`, read-only: run it before the slow scoring."""
    with engine.connect() as conn:
        for (cohort, point), part in frame.groupby(["cohort", "point"], sort=True):
            check_partial(str(cohort), str(point), _stored_ids(conn, cohort, point), set(part.student_id), partial)


def write_scores(
    engine: Engine,
    frame: pd.DataFrame,
    summary: dict,
    *,
    partial: Partial = "replace",
    rerank: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    explain: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Written:
    """Store the scores of every (cohort, point) in `frame` in one transaction.

    When the store holds students of that cohort and point that `frame` lacks: "refuse" raises
    PartialCohortError before writing anything; "replace" (this primitive's default; the score step's
    is "refuse") keeps only `frame`'s students; "merge" keeps the other stored students' scores and
    gives the whole cohort new ranks and tiers by `rerank`, then `explain` (given) computes the factors
    of students whose new tier needs them (`score.explain_tiers`).
    Writers of one cohort take turns (a PostgreSQL advisory lock; SQLite's write lock)."""
    if partial == "merge" and rerank is None:
        raise ValueError("partial='merge' needs `rerank` to rank and tier the merged cohort")
    written, actions = [], []
    with engine.begin() as conn:
        for (cohort, point), part in frame.groupby(["cohort", "point"], sort=True):
            if conn.dialect.name == "postgresql":
                key = func.hashtext(literal(f"{cohort}/{point}"))
                conn.execute(select(func.pg_advisory_xact_lock(_PG_COHORT_LOCK_CLASS, key)))
            new = set(part.student_id)
            stored = _stored_ids(conn, cohort, point)
            check_partial(str(cohort), str(point), stored, new, partial)
            kept = stored - new if partial == "merge" else set()
            if kept:
                q = select(*[scores.c[c] for c in _SCORE_COLS]).where(
                    scores.c.cohort == cohort, scores.c.point == point, scores.c.student_id.in_(sorted(kept))
                )
                others = pd.DataFrame(conn.execute(q).mappings().all(), columns=_SCORE_COLS)
                if rerank is None:
                    raise ValueError("merging into a stored cohort needs `rerank` (score.rerank) to re-tier it whole")
                part = rerank(pd.concat([_with_inputs(part)[_SCORE_COLS], others], ignore_index=True))
                if explain is not None:
                    part = explain(part)
            action = "new" if not stored else "merged" if kept else "replaced"
            conn.execute(delete(scores).where(scores.c.cohort == cohort, scores.c.point == point))
            conn.execute(delete(score_runs).where(score_runs.c.cohort == cohort, score_runs.c.point == point))
            counts = part["tier"].value_counts()
            entry = {
                "cohort": str(cohort),
                "point": str(point),
                "action": action,
                "n_students": int(len(part)),
                "n_from_file": len(new),
                "n_kept": len(kept),
                "n_dropped": len(stored - new) if partial == "replace" else 0,
                "tiers": {t: int(counts.get(t, 0)) for t in ("high", "medium", "low")},
            }
            rows = _rows(part)
            conn.execute(
                insert(score_runs),
                {
                    "cohort": cohort,
                    "point": point,
                    "model_version": str(frame.model_version.iloc[0]),
                    "n_students": int(len(part)),
                    "summary": json.loads(json.dumps({**summary, "write": entry}, default=str)),
                    "scored_at": pd.Timestamp(frame.scored_at.iloc[0]).to_pydatetime(),
                },
            )
            for chunk in _chunks(rows):
                conn.execute(insert(scores), chunk)
            written.append(part)
            actions.append(entry)
    return Written(pd.concat(written, ignore_index=True) if written else frame.iloc[:0], actions)


@dataclass
class OutcomesWritten:
    """What `write_outcomes` did, per cohort: `before` (recorded before), `in_file`, `kept_before` (of the
    file's students, recorded before), `added` (not recorded before), `changed` (recorded before with another
    outcome), `missing` (recorded before, not in the file), `action` ("new", "replaced", "merged", or
    "replaced-partly": the missing ones deleted) and `n_now` (recorded after the write)."""

    n: int
    cohorts: dict[str, dict] = field(default_factory=dict)


def _outcome_rows(frame: pd.DataFrame, now: datetime) -> list[dict]:
    return [
        {
            "cohort": str(r.cohort),
            "student_id": str(r.student_id),
            "outcome": str(r.outcome),
            "at_risk": int(r.at_risk),
            "recorded_at": now,
        }
        for r in frame.itertuples(index=False)
    ]


def _partial_outcomes_message(source: str, partial: dict[str, dict]) -> str:
    """One message for every cohort whose recorded outcomes the file lacks: counts only, never ids."""
    each = "; ".join(
        f"cohort {cohort} has {w['before']} outcomes recorded, this file has {w['in_file']} of its students "
        f"({w['kept_before']} recorded before, {w['added']} new), so {w['missing']} recorded before are missing "
        "from it"
        for cohort, w in partial.items()
    )
    return (
        f"{source}: {each}. Nothing was written. To update this file's students and keep the other students' "
        'recorded outcomes, run outcomes with --merge (partial="merge"); to keep only this file\'s outcomes, '
        'deleting the others recorded before, run outcomes with --replace (partial="replace").'
    )


def write_outcomes(
    engine: Engine,
    frame: pd.DataFrame,
    *,
    require_scored: bool = True,
    partial: Partial = "replace",
    source: str = "outcomes",
) -> OutcomesWritten:
    """Record the outcomes of the cohorts in `frame` (cohort, student_id, outcome, at_risk), one transaction.

    Outcomes belong to a scored cohort: with `require_scored`, a cohort without stored scores is
    refused (UnscoredCohortError) before anything is written. When the store holds outcomes of a
    cohort's students that `frame` lacks: "refuse" raises PartialCohortError naming `source` (every such
    cohort in one message) and writes nothing; "replace" (this primitive's default; the outcomes step's is
    "refuse") keeps only `frame`'s; "merge" keeps the others'. A frame covering every student recorded
    before replaces them whatever `partial` says. An outcome that did not change keeps its `recorded_at`.

    Each cohort's recorded rows are taken with DELETE ... RETURNING, so the read and the write are one
    transaction on SQLite too (the DELETE takes its write lock); writers of one cohort take turns (a
    PostgreSQL advisory lock)."""
    now = datetime.now(UTC)
    cohorts = sorted(frame.cohort.astype(str).unique())
    written = OutcomesWritten(0)
    refused: dict[str, dict] = {}
    o = outcomes.c
    with engine.begin() as conn:
        if require_scored:
            scored = set(conn.execute(select(score_runs.c.cohort).where(score_runs.c.cohort.in_(cohorts))).scalars())
            unscored = [c for c in cohorts if c not in scored]
            if unscored:
                raise UnscoredCohortError(
                    f"Cohort(s) {', '.join(unscored)} have no stored scores in {safe_url(str(engine.url))}: outcomes "
                    "are recorded for a cohort that was scored, to compare them with its scores. Nothing was written. "
                    "Score the cohort first (`student-risk score INTAKE -c SETTINGS`), or check the file's cohort "
                    "column (and --cohort) and the store (--home, STUDENT_RISK_STORE_URL)."
                )
        for cohort in cohorts:
            if conn.dialect.name == "postgresql":
                key = func.hashtext(literal(f"outcomes/{cohort}"))
                conn.execute(select(func.pg_advisory_xact_lock(_PG_COHORT_LOCK_CLASS, key)))
            taken = conn.execute(
                delete(outcomes)
                .where(o.cohort == cohort)
                .returning(o.cohort, o.student_id, o.outcome, o.at_risk, o.recorded_at)
            )
            before = {r.student_id: dict(r._mapping) for r in taken}
            rows = _outcome_rows(frame[frame.cohort.astype(str) == cohort], now)
            new = {r["student_id"] for r in rows}
            missing = before.keys() - new
            changed = 0
            for r in rows:
                old = before.get(r["student_id"])
                if old is None:
                    continue
                if old["outcome"] == r["outcome"] and old["at_risk"] == r["at_risk"]:
                    r["recorded_at"] = old["recorded_at"]  # unchanged: keeps the time it was first recorded
                else:
                    changed += 1
            kept = [before[s] for s in sorted(missing)] if partial == "merge" else []
            if not before:
                action = "new"
            elif missing:
                action = "merged" if partial == "merge" else "replaced-partly"
            else:
                action = "replaced"
            entry = {
                "before": len(before),
                "in_file": len(new),
                "kept_before": len(new & before.keys()),
                "added": len(new - before.keys()),
                "changed": changed,
                "missing": len(missing),
                "action": action,
                "n_now": len(rows) + len(kept),
            }
            if missing and partial == "refuse":
                refused[cohort] = entry
                continue  # every refused cohort is named in one message; the transaction is rolled back
            for chunk in _chunks(rows + kept):
                conn.execute(insert(outcomes), chunk)
            written.n += len(rows)
            written.cohorts[cohort] = entry
        if refused:
            raise PartialCohortError(_partial_outcomes_message(source, refused))
    return written


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


def count_outcomes(engine: Engine, cohort: str) -> int:
    """How many outcomes of `cohort` are recorded."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(outcomes.c.cohort == cohort)).scalar() or 0)


@dataclass(frozen=True)
class OutcomeMatch:
    """How a cohort's recorded outcomes meet its stored scores.

    `points`: per prediction point scored, (students scored, of them with a recorded outcome).
    `unmatched`: student ids of recorded outcomes that match no score at any point, for the caller to
    name their rows by line (ids are never shown)."""

    points: dict[str, tuple[int, int]]
    unmatched: list[str]


def match_outcomes(engine: Engine, cohort: str) -> OutcomeMatch:
    """Match `cohort`'s recorded outcomes to its scores, per point, in two indexed queries."""
    s, o = scores.c, outcomes.c
    joined = scores.outerjoin(outcomes, (o.cohort == s.cohort) & (o.student_id == s.student_id))
    per_point = select(s.point, func.count(), func.count(o.id)).select_from(joined).where(s.cohort == cohort)
    scored = select(s.id).where(s.cohort == cohort, s.student_id == o.student_id).exists()
    with engine.connect() as conn:
        points = {p: (int(n), int(m)) for p, n, m in conn.execute(per_point.group_by(s.point)).all()}
        unmatched = list(conn.execute(select(o.student_id).where(o.cohort == cohort, ~scored)).scalars())
    return OutcomeMatch(points, unmatched)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, prefixed with ' (OWASP CSV injection)."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def export_csv(frame: pd.DataFrame, path) -> None:
    """Scores as a flat CSV (mode 0600): one row per student, factors in the words made at scoring
    (`risk_model.explain`), no live formulas. `explained` is "yes" for a student whose factors were
    computed at scoring; empty: not computed then (a tier outside `[scoring] factor_tiers`, or scored
    without factors), so the factor columns are empty and the API computes them when the student is
    looked up."""
    out = frame[["student_id", "cohort", "point", "probability", "tier", "rank", "model_version", "scored_at"]].copy()
    out["explained"] = ["yes" if len(f) else "" for f in frame["factors"]]
    for i in range(3):
        out[f"factor_{i + 1}"] = [
            (f[i].get("text") or f"{f[i]['feature']} ({f[i]['direction']} risk)") if len(f) > i else ""
            for f in frame["factors"]
        ]
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
    with os.fdopen(fd, "w", newline="") as fh:
        out.to_csv(fh, index=False, lineterminator="\r\n")  # RFC 4180: a cell with a bare CR is quoted
    os.chmod(tmp, FILE_MODE)  # an older .tmp left by a crash keeps its mode through O_TRUNC
    os.replace(tmp, path)


# --- reads for the API -------------------------------------------------------------------

_STUDENT_COLS = [
    scores.c[n]
    for n in ("cohort", "point", "probability", "tier", "rank", "factors", "model_version", "scored_at", "id", "inputs")
]
_PAGE_COLS = [scores.c[n] for n in ("student_id", "probability", "tier", "rank")]


def _student_query(cohort: bool, point: bool):
    q = select(*_STUDENT_COLS).where(scores.c.student_id == bindparam("student_id"))
    if cohort:
        q = q.where(scores.c.cohort == bindparam("cohort"))
    if point:
        q = q.where(scores.c.point == bindparam("point"))
    return q


# Built once: SQLAlchemy caches the compiled form of a statement object.
_STUDENT_QUERIES = {(c, p): _student_query(c, p) for c in (False, True) for p in (False, True)}
_AUDIT_ONE = insert(audit_log).values(
    key_id=bindparam("key_id"),
    action="risk",
    student_id=bindparam("student_id"),
    cohort=bindparam("a_cohort"),
    point=bindparam("a_point"),
    at=bindparam("at"),
)
_STUDENT_AUDITED = {k: q.add_cte(_AUDIT_ONE.cte("audit")) for k, q in _STUDENT_QUERIES.items()}


def student_query(*, cohort: bool, point: bool, audited: bool):
    """The student lookup of one filter shape; `audited` adds the audit row as a CTE (PostgreSQL
    only: SQLite has no INSERT inside WITH). Both API paths run these statements (see `api.lookups`)."""
    return (_STUDENT_AUDITED if audited else _STUDENT_QUERIES)[(cohort, point)]


def lookup_params(student_id: str, *, key_id: int | None, cohort: str | None, point: str | None) -> dict:
    """The bound values of `student_query`."""
    return {
        "student_id": student_id,
        "cohort": cohort,
        "point": point,
        "key_id": key_id,
        "a_cohort": cohort,
        "a_point": point,
        "at": datetime.now(UTC),
    }


def audit_row(key_id: int, action: str, student_id: str, cohort: str | None, point: str | None) -> dict:
    """One `audit_log` row: who looked up which student, now."""
    return {
        "key_id": key_id,
        "action": action,
        "student_id": student_id,
        "cohort": cohort,
        "point": point,
        "at": datetime.now(UTC),
    }


def student_scores(
    engine: Engine, student_id: str, *, key_id: int | None, cohort: str | None = None, point: str | None = None
) -> list[dict]:
    """Every stored score of a student (optionally one cohort / point), and an audit row for
    the lookup by `key_id`, written whether or not a score is found (`key_id=None`: the caller
    records the audit row itself, as the API does on SQLite)."""
    params = lookup_params(student_id, key_id=key_id, cohort=cohort, point=point)
    shape = {"cohort": cohort is not None, "point": point is not None}
    with engine.connect() as conn:
        if key_id is not None and conn.dialect.name == "postgresql":
            rows = conn.execute(student_query(**shape, audited=True), params).all()
        else:
            if key_id is not None:
                conn.execute(_AUDIT_ONE, params)
            rows = conn.execute(student_query(**shape, audited=False), params).all()
        conn.commit()
    return [r._asdict() for r in rows]


_SAVE_FACTORS = (
    update(scores)
    .where(
        scores.c.id
        == select(scores.c.id)
        .where(scores.c.id == bindparam("row_id"), scores.c.inputs.is_not(None))
        .with_for_update(skip_locked=True)  # PostgreSQL: a row a re-score is replacing is skipped, not waited for
        .scalar_subquery()
    )
    .values(factors=bindparam("new_factors"), inputs=None)
)


def save_factors(conn: Connection, found: list[dict]) -> int:
    """Store factors computed on first read (`score.explain_inputs`) in place of the inputs they came from:
    `found` holds {"id": the score row's id, "factors": [...]}. A row re-scored since (its id is gone),
    explained already, or locked by a writer is left as it is. Returns the rows updated; the caller commits."""
    if not found:
        return 0
    params = [{"row_id": int(f["id"]), "new_factors": f["factors"]} for f in found]
    return conn.execute(_SAVE_FACTORS, params).rowcount


def write_audit(engine: Engine, table: Table, rows: list[dict]) -> None:
    """Append rows to `audit_log` or `auth_failures` in one transaction."""
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)


def cohort_points(engine: Engine, cohort: str) -> list[str]:
    """The prediction points at which `cohort` was scored."""
    with engine.connect() as conn:
        return list(conn.execute(select(score_runs.c.point).where(score_runs.c.cohort == cohort)).scalars())


def cohort_page(
    engine: Engine,
    cohort: str,
    point: str,
    *,
    key_id: int | None,
    limit: int,
    tier: str | None = None,
    min_probability: float | None = None,
    after: tuple[float, str] | None = None,
) -> list[dict]:
    """One page of a cohort, highest risk first (ties by student id), after the keyset `after`
    = (probability, student_id) of the previous page's last row; each student returned is audited
    (`key_id=None`: by the caller)."""
    q = select(*_PAGE_COLS).where(scores.c.cohort == cohort, scores.c.point == point)
    if tier is not None:
        q = q.where(scores.c.tier == tier)
    if min_probability is not None:
        q = q.where(scores.c.probability >= min_probability)
    if after is not None:
        p, sid = after
        # `probability <= p` is the index range; the OR only sorts out the ties at p
        q = q.where(scores.c.probability <= p, or_(scores.c.probability < p, scores.c.student_id > sid))
    q = q.order_by(scores.c.probability.desc(), scores.c.student_id).limit(limit)
    now = datetime.now(UTC)
    with engine.connect() as conn:
        if key_id is not None and conn.dialect.name == "postgresql":
            page = q.cte("page")
            audit = (
                insert(audit_log)
                .from_select(
                    ["key_id", "action", "student_id", "cohort", "point", "at"],
                    select(
                        literal(key_id),
                        literal("list"),
                        page.c.student_id,
                        literal(cohort),
                        literal(point),
                        literal(now),
                    ),
                )
                .cte("audit")
            )
            stmt = select(page).add_cte(audit).order_by(page.c.probability.desc(), page.c.student_id)
            rows = [r._asdict() for r in conn.execute(stmt)]
        else:
            rows = [r._asdict() for r in conn.execute(q)]
            if rows and key_id is not None:
                conn.execute(
                    insert(audit_log), [audit_row(key_id, "list", r["student_id"], cohort, point) for r in rows]
                )
        conn.commit()
    return rows


def cohort_summaries(engine: Engine) -> list[dict]:
    """Per (cohort, point): students per tier, and the model version and time of the run."""
    counts = select(scores.c.cohort, scores.c.point, scores.c.tier, func.count()).group_by(
        scores.c.cohort, scores.c.point, scores.c.tier
    )
    runs = select(score_runs.c.cohort, score_runs.c.point, score_runs.c.model_version, score_runs.c.scored_at)
    out: dict[tuple[str, str], dict] = {}
    with engine.connect() as conn:
        for cohort, point, tier, n in conn.execute(counts):
            entry = out.setdefault((cohort, point), {"cohort": cohort, "point": point, "tiers": {}, "n_students": 0})
            entry["tiers"][tier] = n
            entry["n_students"] += n
        for cohort, point, version, at in conn.execute(runs):
            if (cohort, point) in out:
                out[(cohort, point)].update(model_version=version, scored_at=at)
    return list(out.values())


def latest_runs(engine: Engine, point: str) -> list[dict]:
    """The score runs of a prediction point (cohort, model version, time)."""
    q = select(score_runs.c.cohort, score_runs.c.model_version, score_runs.c.scored_at).where(
        score_runs.c.point == point
    )
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(q)]


def run_summary(engine: Engine, cohort: str, point: str) -> dict | None:
    """The summary of the score run of a cohort and point (with its expected performance), or None."""
    q = select(score_runs.c.summary).where(score_runs.c.cohort == cohort, score_runs.c.point == point)
    with engine.connect() as conn:
        return conn.execute(q).scalar()


def tier_floors(engine: Engine, cohort: str, point: str) -> dict[str, float]:
    """The lowest probability that got each tier in a scored cohort (an index probe per tier)."""
    q = select(func.min(scores.c.probability)).where(
        scores.c.cohort == cohort, scores.c.point == point, scores.c.tier == bindparam("tier")
    )
    with engine.connect() as conn:
        floors = {tier: conn.execute(q, {"tier": tier}).scalar() for tier in ("high", "medium", "low")}
    return {tier: float(p) for tier, p in floors.items() if p is not None}


def scored_outcomes(engine: Engine, point: str) -> pd.DataFrame:
    """Scores of `point` joined with the recorded outcomes: cohort, model_version, probability, at_risk."""
    q = (
        select(scores.c.cohort, scores.c.model_version, scores.c.probability, outcomes.c.at_risk)
        .join(outcomes, (outcomes.c.cohort == scores.c.cohort) & (outcomes.c.student_id == scores.c.student_id))
        .where(scores.c.point == point)
    )
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).all(), columns=["cohort", "model_version", "probability", "at_risk"])


def ping(engine: Engine) -> None:
    """Raise unless the store answers."""
    with engine.connect() as conn:
        conn.execute(select(1))


# --- reads for the reports (reports/build.py) ----------------------------------------------
# Kept together at the end of the module: the report layer's only way into the store.


def report_scores(engine: Engine, cohort: str, point: str) -> pd.DataFrame:
    """A cohort's scores for the reports: student_id, probability, tier, model_version.

    Only the columns reports use: skipping the per-student factors keeps a million rows quick."""
    s = scores.c
    q = select(s.student_id, s.probability, s.tier, s.model_version).where(s.cohort == cohort, s.point == point)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).all(), columns=["student_id", "probability", "tier", "model_version"])


def report_outcomes(engine: Engine, cohort: str) -> pd.DataFrame:
    """A cohort's recorded outcomes for the reports: student_id, at_risk."""
    q = select(outcomes.c.student_id, outcomes.c.at_risk).where(outcomes.c.cohort == cohort)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).all(), columns=["student_id", "at_risk"])


def has_outcomes(engine: Engine, cohort: str) -> bool:
    """Whether any real outcome of `cohort` is recorded."""
    q = select(outcomes.c.id).where(outcomes.c.cohort == cohort).limit(1)
    with engine.connect() as conn:
        return conn.execute(q).first() is not None
