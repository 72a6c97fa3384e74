"""Learning-environment activity: a long log in, per-student features known by day N out.

The log (Moodle, Canvas, Blackboard, OULAD's studentVle) has one row per student, cohort,
day (or time stamp), activity type and count, as named in the settings' `[activity]`
section. It is read once per process with DuckDB (compressed CSV or Parquet, about 3 s for
OULAD's 7M rows here) and reduced to two compact tables: activity per student and day (with
one column per listed type) and the first day each student touched each resource. Every
prediction point is then a query on those, so five points cost one read.

Known by day N means dated on or before day N: every feature below uses only those rows,
so rewriting or deleting later rows changes nothing (tests/test_activity.py checks this).
- activity_total, activity_last7, activity_last14: counts so far, and in the last 7 / 14 days
- activity_days: days with any activity; activity_resources: distinct resources touched
- activity_<type>: count so far per listed type
- activity_trend: log ratio of the daily rate in the last 14 days to the rate from day 0 to
  then (NaN before day 21, when there is no earlier stretch worth comparing)
- activity_days_since_last: N minus the last active day (NaN if never active)
- activity_before_start: activity dated before day 0
- activity_total_pct, activity_last14_pct, activity_days_pct: the student's percentile among
  classmates on the day-N list (same cohort and `section_columns`), which stays comparable
  when a course's site or number of resources changes between years.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from risk_model.config import ActivityConfig
from risk_model.schema import ContractError

log = logging.getLogger(__name__)
_CACHE: dict[tuple, ActivityLog] = {}
_LOCK = threading.Lock()


def resolve(file: str, data_path: str | Path) -> Path:
    """A relative activity file is read from the data folder (the folder given, or the table's folder)."""
    f = Path(file).expanduser()
    if f.is_absolute():
        return f
    base = Path(data_path)
    return (base if base.is_dir() else base.parent) / f


def _relation(path: Path) -> str:
    name = path.name.lower()
    quoted = str(path).replace("'", "''")
    if name.endswith(".parquet"):
        return f"read_parquet('{quoted}')"
    if name.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".csv.zst")):
        return f"read_csv('{quoted}', header=true, all_varchar=true)"
    raise ContractError(f"{path}: unsupported activity file type. Use .csv, .csv.gz or .parquet.")


def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


class ActivityLog:
    """The activity log reduced to per-day and first-touch tables in a private DuckDB database."""

    def __init__(self, cfg: ActivityConfig, path: Path) -> None:
        import duckdb

        if not path.exists():
            raise ContractError(
                f"{path}: activity file not found ([activity] file = {cfg.file!r}). A relative path is read from "
                "the data folder given on the command line; put the file there or give an absolute path."
            )
        self.cfg, self.path = cfg, path
        self._lock = threading.Lock()  # one DuckDB connection: queries from several threads take turns
        self.con = duckdb.connect(config={"threads": 2})
        self.con.execute("SET enable_progress_bar = false")
        src = _relation(path)
        try:
            columns = [r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        except duckdb.Error as exc:
            raise ContractError(f"{path}: cannot be read as an activity log ({exc}).") from None
        wanted = [
            *cfg.id_columns,
            cfg.cohort_column,
            cfg.day_column,
            cfg.timestamp_column,
            cfg.type_column,
            cfg.count_column,
            cfg.resource_column,
        ]
        missing = [c for c in wanted if c and c not in columns]
        if missing:
            raise ContractError(
                f"{path}: missing column(s) {missing} named in the settings' [activity] section "
                f"(the file has {columns}). Rename them in the settings file to match the file."
            )
        ident = (
            f"CAST({_q(cfg.id_columns[0])} AS VARCHAR)"
            if len(cfg.id_columns) == 1
            else "concat_ws('-', " + ", ".join(f"CAST({_q(c)} AS VARCHAR)" for c in cfg.id_columns) + ")"
        )
        count = f"TRY_CAST({_q(cfg.count_column)} AS DOUBLE)" if cfg.count_column else "1.0"
        joins = ""
        if cfg.day_column:
            day_raw = _q(cfg.day_column)
            day = f"CAST(floor(TRY_CAST({day_raw} AS DOUBLE)) AS INTEGER)"
        else:
            day_raw = _q(str(cfg.timestamp_column))  # the config requires one of the two
            starts = pd.DataFrame({"c": list(cfg.cohort_start), "s": pd.to_datetime(list(cfg.cohort_start.values()))})
            self.con.register("cohort_start", starts)
            joins += f" LEFT JOIN cohort_start ON cohort_start.c = CAST(src.{_q(cfg.cohort_column)} AS VARCHAR)"
            day = f"CAST(date_diff('day', cohort_start.s, date_trunc('day', TRY_CAST({day_raw} AS TIMESTAMP))) AS INTEGER)"
        resource = f"CAST({_q(cfg.resource_column)} AS VARCHAR)" if cfg.resource_column else "NULL"
        if cfg.resource_types:
            rt = cfg.resource_types
            tpath = resolve(rt.file, path)
            if not tpath.exists():
                raise ContractError(
                    f"{tpath}: resource-type file not found ([activity.resource_types] file = {rt.file!r}); "
                    "it is read from the activity file's folder when relative."
                )
            joins += (
                f" LEFT JOIN (SELECT CAST({_q(rt.resource_column)} AS VARCHAR) AS r, any_value(CAST({_q(rt.type_column)} "
                f"AS VARCHAR)) AS t FROM {_relation(tpath)} GROUP BY 1) lookup ON lookup.r = {resource}"
            )
            kind = "lookup.t"
        else:
            kind = f"CAST({_q(cfg.type_column)} AS VARCHAR)" if cfg.type_column else "NULL"
        self.con.execute(
            f"CREATE TEMP TABLE ev AS SELECT {ident} AS id, CAST(src.{_q(cfg.cohort_column)} AS VARCHAR) AS cohort, "
            f"{day} AS day, {day_raw} AS day_raw, {kind} AS kind, {resource} AS resource, {count} AS n "
            f"FROM {src} src{joins}"
        )
        self._check_days(day_raw)
        by_type = "".join(f", sum(n) FILTER (WHERE kind = '{t}') AS {_q('activity_' + t)}" for t in cfg.types)
        self.con.execute(
            f"CREATE TEMP TABLE daily AS SELECT id, cohort, day, sum(n) AS n{by_type} FROM ev "
            "WHERE day IS NOT NULL GROUP BY id, cohort, day"
        )
        if cfg.resource_column:
            self.con.execute(
                "CREATE TEMP TABLE first_touch AS SELECT id, cohort, resource, min(day) AS day FROM ev "
                "WHERE day IS NOT NULL AND resource IS NOT NULL GROUP BY id, cohort, resource"
            )
        counted = self.con.execute("SELECT count(*) FROM ev").fetchone()
        self.n_rows = counted[0] if counted else 0
        self.con.execute("DROP TABLE ev")

    def _check_days(self, day_raw: str) -> None:
        cfg = self.cfg
        bad = self.con.execute(
            "SELECT count(*), list(day_raw ORDER BY day_raw)[1:5], list(DISTINCT cohort)[1:5] FROM ev WHERE day IS NULL"
        ).fetchone()
        if bad and bad[0]:
            col = cfg.day_column or cfg.timestamp_column
            what = "day numbers" if cfg.day_column else "date-times"
            unknown = sorted(set(bad[2]) - set(cfg.cohort_start)) if cfg.timestamp_column else []
            fix = (
                f"add cohort_start dates for cohort(s) {unknown}"
                if unknown
                else "fix or remove those rows (a day is an integer from the cohort's start)"
            )
            raise ContractError(
                f"{self.path}: column {col!r} has {bad[0]} row(s) that are not {what}, e.g. {bad[1]}. Fix: {fix}."
            )

    def _windows(self, day: int) -> pd.DataFrame:
        """Per student and cohort: the counts over rows dated on or before `day` (one query per table)."""
        cfg = self.cfg
        types = "".join(f", coalesce(sum({_q('activity_' + t)}), 0) AS {_q('activity_' + t)}" for t in cfg.types)
        with self._lock:
            agg = self.con.execute(
                "SELECT id, cohort, sum(n) AS activity_total, "
                f"coalesce(sum(n) FILTER (WHERE day > {day - 7}), 0) AS activity_last7, "
                f"coalesce(sum(n) FILTER (WHERE day > {day - 14}), 0) AS activity_last14, "
                "count(*) AS activity_days, max(day) AS last_day, "
                "coalesce(sum(n) FILTER (WHERE day < 0), 0) AS activity_before_start, "
                f"coalesce(sum(n) FILTER (WHERE day >= 0 AND day <= {day - 14}), 0) AS earlier"
                f"{types} FROM daily WHERE day <= {day} GROUP BY id, cohort"
            ).df()
            if cfg.resource_column:
                res = self.con.execute(
                    "SELECT id, cohort, count(*) AS activity_resources FROM first_touch "
                    f"WHERE day <= {day} GROUP BY id, cohort"
                ).df()
                agg = agg.merge(res, on=["id", "cohort"], how="left")
        return agg

    def features(self, rows: pd.DataFrame, day: int) -> pd.DataFrame:
        """Activity features on `day` for `rows` (columns `id`, `cohort`, then section columns), indexed like them."""
        cfg = self.cfg
        agg = self._windows(day)
        key = pd.DataFrame({"id": rows["id"].astype(str).to_numpy(), "cohort": rows["cohort"].astype(str).to_numpy()})
        out = key.merge(agg, on=["id", "cohort"], how="left", validate="many_to_one")
        counts = [c for c in out.columns if c.startswith("activity_")]
        out[counts] = out[counts].astype("float64").fillna(0.0)
        out["activity_days_since_last"] = (day - out["last_day"]).astype("float64")
        if day >= 21:
            recent = np.log1p(out["activity_last14"] / 14)
            earlier = np.log1p(out["earlier"].astype("float64") / (day - 13))
            out["activity_trend"] = (recent - earlier).astype("float64")
        else:
            out["activity_trend"] = np.nan
        groups = [rows["cohort"].astype(str).to_numpy(), *(rows[c].astype(str).to_numpy() for c in cfg.section_columns)]
        for col in ["activity_total", "activity_last14", "activity_days"]:
            out[f"{col}_pct"] = out[col].groupby(groups).rank(pct=True, method="average")
        out.index = rows.index
        return out[list(cfg.feature_labels)]


def read_log(cfg: ActivityConfig, data_path: str | Path) -> ActivityLog:
    """The activity log named by `cfg`, read once per process and file version (kept for the next point)."""
    path = resolve(cfg.file, data_path).resolve()
    stat = path.stat() if path.exists() else None
    key = (str(path), stat.st_mtime_ns if stat else None, stat.st_size if stat else None, cfg.model_dump_json())
    with _LOCK:
        if key not in _CACHE:
            _CACHE.clear()  # one log at a time: bounded memory
            _CACHE[key] = ActivityLog(cfg, path)
            log.info("Read activity log %s: %d rows", path, _CACHE[key].n_rows)
        return _CACHE[key]


def add_activity(
    df: pd.DataFrame, cfg: ActivityConfig, data_path: str | Path, day: int, *, id_column: str, cohort_column: str
) -> pd.DataFrame:
    """`df` with the activity features known by `day` joined on its id and cohort columns."""
    missing = [c for c in [id_column, cohort_column, *cfg.section_columns] if c not in df.columns]
    if missing:
        raise ContractError(
            f"{data_path}: the student table has no column(s) {missing} that [activity] joins or groups on. "
            "Add them to the table, or fix section_columns in the settings file."
        )
    rows = pd.DataFrame({"id": df[id_column], "cohort": df[cohort_column]}, index=df.index)
    for c in cfg.section_columns:
        rows[c] = df[c]
    feats = read_log(cfg, data_path).features(rows, day)
    return df.drop(columns=[c for c in feats.columns if c in df.columns]).join(feats)
