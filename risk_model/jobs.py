"""The yearly job's steps as plain functions: what a flow task or the CLI calls.

Each step validates before it writes, and writes atomically (registry) or in one
transaction (store), so a failure leaves earlier results as they were.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from risk_model import advising, alerts, store
from risk_model.config import Config, Settings
from risk_model.estimate import expected_performance
from risk_model.paths import safe_name
from risk_model.private import private_dir
from risk_model.registry import Bundle, Registry
from risk_model.schema import Stage, at_risk, row_place, validate
from risk_model.score import ScoreResult, explain_pending, rerank, score
from risk_model.sources import load_table, point_day
from risk_model.sources.guard import check_looks_like_table
from risk_model.train import Fit, Map, train

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def prepare(
    config: Config,
    path: str | Path,
    *,
    stage: Stage,
    point: str = "default",
    cohorts: list[str] | None = None,
) -> pd.DataFrame:
    """Load the table for a prediction point and validate it against the contract (as known at that point).

    A text file that is not a table (binary, no header line, no delimiter) is refused before it is read."""
    config = config.for_point(point)
    if (config.source.kind != "oulad" or stage == "outcomes") and Path(path).suffix.lower() in (".csv", ".txt"):
        check_looks_like_table(path)
    df = load_table(config, path, point=point, stage=stage, cohorts=cohorts)
    out = validate(df, config.dataset, stage=stage, source=str(path))
    if stage == "outcomes":  # where each row is in the file, to name the rows no scored student matches
        word, offset = _row_place(config, path)
        out.attrs["source"] = _outcome_source(config, path)
        out.attrs["row_word"] = word
        out.attrs["row_numbers"] = [int(p) + offset for p in df.index]  # file positions (load_table keeps them)
    return out


def _outcome_source(config: Config, path: str | Path) -> str:
    """The file an outcomes source's rows come from: OULAD's studentInfo.csv in a raw folder, else the path."""
    if config.source.kind == "oulad" and Path(path).is_dir():
        from risk_model.sources.oulad import OUTCOME_FILE

        return str(Path(path) / OUTCOME_FILE)
    return str(path)


def _row_place(config: Config, path: str | Path) -> tuple[str, int]:
    """How a row of an outcomes source is named: a line of OULAD's studentInfo.csv, else as validation names it."""
    if config.source.kind == "oulad" and Path(path).is_dir():
        from risk_model.sources.oulad import OUTCOME_FILE

        return f"{OUTCOME_FILE} line", 2
    word, offset = row_place(str(path))
    return f"{Path(path).name} {word}", offset


def train_and_register(
    settings: Settings,
    config: Config,
    df: pd.DataFrame,
    *,
    point: str = "default",
    force: bool = False,
    progress: Progress = log.info,
    map: Map = builtins.map,
    fit: Fit | None = None,
    threads: int | None = None,
) -> dict:
    """Train on validated past cohorts, save a new version, promote it if it is at least as good.

    `map`, `fit`, `threads`: where training's units run (see `train.train`)."""
    config = config.for_point(point)
    result = train(df, config, progress=progress, map=map, fit=fit, threads=threads)
    registry = Registry(settings.registry_dir)
    version = registry.save(result, config, point=point)
    promoted, why = registry.promote(version, point=point, force=force)
    progress(f"Model {version} saved; {'now champion' if promoted else 'NOT promoted'} ({why})")
    return {
        "version": version,
        "point": point,
        "promoted": promoted,
        "promotion": why,
        "champion": registry.champion(point),
        "model_dir": str(registry.root / point / "versions" / version),
        "training_cohorts": result.training_cohorts,
        **result.summary,
    }


def score_and_store(
    settings: Settings,
    config: Config,
    df: pd.DataFrame,
    *,
    point: str = "default",
    factors: bool = True,
    partial: store.Partial = "refuse",
    progress: Progress = log.info,
) -> dict:
    """Score a validated intake with the champion and store its scores (one transaction), export CSV.

    Every student gets probability, rank and tier; the tiers of `[scoring] factor_tiers` get their top
    factors now, the others when first read (`factors=False`: nobody, now or later). `partial` decides what happens
    when the store holds students of the cohort that `df` lacks: "refuse" (checked before scoring, and again
    in the write), "merge" (students whose merged tier is acted on are explained in the same transaction)
    or "replace" (see `store.write_scores`)."""
    config = config.for_point(point)
    bundle = Registry(settings.registry_dir).load(point=point, contract=config.dataset)
    c = config.dataset
    keys = pd.DataFrame(
        {"cohort": df[c.cohort_column].astype(str), "point": bundle.metadata["point"], "student_id": df[c.id_column]}
    )
    with store.opened(settings.resolved_store_url) as engine:
        store.check_scores(engine, keys.astype({"student_id": str}), partial)  # before the slow part
    result = score(bundle, df, config.dataset, config.scoring, factors=factors, progress=progress)
    explain = None
    if factors and config.scoring.n_factors:
        acted_on, bundle_of = list(config.scoring.factor_tiers), _versions(settings, point, bundle)
        explain = lambda f: explain_pending(f, f["tier"].isin(acted_on).to_numpy(), bundle_of)  # noqa: E731
    return store_scores(
        settings,
        result,
        partial=partial,
        rerank=lambda f: rerank(f, config.scoring),
        explain=explain,
        progress=progress,
    )


def _versions(settings: Settings, point: str, loaded: Bundle | None = None) -> Callable[[str], Bundle]:
    """Model versions of `point` by name, each loaded once: the models that scored stored students."""
    registry, cache = Registry(settings.registry_dir), {loaded.version: loaded} if loaded else {}

    def bundle_of(version: str) -> Bundle:
        if version not in cache:
            cache[version] = registry.load(version, point=point)
        return cache[version]

    return bundle_of


def store_scores(
    settings: Settings,
    result: ScoreResult,
    *,
    partial: store.Partial = "refuse",
    rerank: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    explain: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    progress: Progress = log.info,
) -> dict:
    """Store the result's cohort scores (one transaction; `partial`, `rerank` and `explain` as in
    `store.write_scores`) and export what the store now holds for them as CSV. The summary's `stored` says
    what happened to the cohort."""
    with store.opened(settings.resolved_store_url) as engine:
        written = store.write_scores(
            engine, result.scores, result.summary, partial=partial, rerank=rerank, explain=explain
        )
    private_dir(settings.exports_dir)
    point, k = result.summary["point"], result.summary.get("top_k_percent", 10)
    exports, by_cohort = [], {}
    for cohort, part in written.frame.groupby("cohort", sort=True):  # one file per cohort, never a pooled one
        export = settings.exports_dir / f"scores-{safe_name(str(cohort))}-{safe_name(point)}.csv"
        store.export_csv(part, export)
        exports.append(str(export))
        by_cohort[str(cohort)] = {
            "n_students": int(len(part)),
            "tiers": {t: int((part["tier"] == t).sum()) for t in ("high", "medium", "low")},
            "expected": expected_performance(part["probability"].to_numpy(), k),
        }
    cohorts = ", ".join(by_cohort)
    stored = [_describe(a) for a in written.actions]
    tiers = {t: sum(a["tiers"][t] for a in written.actions) for t in ("high", "medium", "low")}
    n = int(len(written.frame))
    progress(
        f"Scored {len(result.scores)} students of cohort {cohorts} with model {result.summary['model_version']}; "
        + "; ".join(stored)
        + f": {tiers}"
    )
    return {
        **result.summary,
        "n_students": n,
        "n_scored": int(len(result.scores)),
        "tiers": tiers,
        "stored": stored,
        "by_cohort": by_cohort,  # what the store now holds per cohort, with its expected performance
        "store": store.safe_url(settings.resolved_store_url),
        "exports": exports,
        "export": exports[0] if len(exports) == 1 else str(settings.exports_dir),
    }


def _describe(a: dict) -> str:
    where = f"cohort {a['cohort']} ({a['point']})"
    if a["action"] == "merged":
        return (
            f"merged {a['n_from_file']} students into {where}: {a['n_kept']} other stored students kept, "
            f"ranks and tiers recomputed over all {a['n_students']}"
        )
    if a["action"] == "replaced":
        dropped = f", {a['n_dropped']} stored students not in the file deleted" if a["n_dropped"] else ""
        return f"replaced the scores of {where} with {a['n_students']} students{dropped}"
    return f"stored {a['n_students']} students of {where} (first scores)"


def alert_and_store(settings: Settings, config: Config, df: pd.DataFrame, *, point: str = "default") -> dict:
    """Compare each student's newly stored score at `point` with their previous point, replace that
    point's alerts and queue them for webhook subscribers (one transaction per cohort). An alerted student
    whose factors were not computed at scoring (outside `[scoring] factor_tiers`) is explained first and the
    factors stored, so every alert says why in factor words."""
    c = config.dataset
    feature = config.alerts.recency_feature
    cohorts = df[c.cohort_column].astype(str)
    out: dict[str, dict] = {}
    bundle_of = _versions(settings, point)
    with store.opened(settings.resolved_store_url) as engine:
        for cohort in sorted(cohorts.unique()):
            part = df[cohorts == cohort]
            recency = None
            if feature in df.columns:  # days since the last activity, per student of this cohort
                values = pd.to_numeric(part[feature], errors="coerce").to_numpy(float)
                recency = pd.Series(values, index=part[c.id_column].astype(str).to_numpy())
            new = store.read_scores(engine, cohort, point)
            before = alerts.earlier_points(store.cohort_points(engine, cohort), point)
            previous = alerts.previous_scores(advising.earlier_scores(engine, cohort, before))
            found = alerts.compute_alerts(new, previous, config.alerts, recency=recency)
            explained = new
            if len(found):
                explained = explain_pending(new, new["student_id"].isin(found["student_id"]).to_numpy(), bundle_of)
            if explained is not new:  # some alerted students had no factors yet: store them, then say why
                now = new["inputs"].notna().to_numpy() & explained["inputs"].isna().to_numpy()
                with engine.begin() as conn:
                    store.save_factors(conn, explained.loc[now, ["id", "factors"]].to_dict("records"))
                new = explained
                found = alerts.compute_alerts(new, previous, config.alerts, recency=recency)
            written = advising.write_alerts(engine, cohort, point, found, batch_size=config.alerts.batch_size)
            out[cohort] = {**alerts.summary(found), **written, "compared_with": before}
            log.info("Alerts for cohort %s at %s: %s", cohort, point, alerts.summary(found))
    return {"point": point, "cohorts": out}


def record_outcomes(settings: Settings, config: Config, df: pd.DataFrame, *, partial: store.Partial = "refuse") -> dict:
    """Store the real outcomes of scored cohorts (validated with stage="outcomes"), then match them to the
    stored scores.

    A file that lacks some students whose outcomes a cohort already has is refused, nothing written,
    unless `partial` says "merge" (update the file's students, keep the others') or "replace" (keep only
    the file's); a file covering every student recorded before replaces their outcomes, so running it
    again duplicates nothing (`store.write_outcomes`, one transaction).
    Every outcome row either matches a student scored at some prediction point or is counted as
    unmatched and named by its row (`jobs.prepare` records where each row is in the file; ids are never
    named). `by_cohort[cohort]["lines"]` says so in words, per prediction point."""
    c = config.dataset
    frame = pd.DataFrame(
        {
            "cohort": df[c.cohort_column].astype(str),
            "student_id": df[c.id_column].astype(str),
            "outcome": df[c.outcome_column].astype(str),
            "at_risk": at_risk(df, c),
        }
    )
    word = str(df.attrs.get("row_word", "row"))
    numbers = df.attrs.get("row_numbers")
    frame["row"] = numbers if numbers is not None and len(numbers) == len(df) else range(len(df))
    source = str(df.attrs.get("source", "the outcomes file"))
    cohorts = c.sort_cohorts(frame.cohort.unique())
    with store.opened(settings.resolved_store_url) as engine:
        # refuses an unscored cohort, or (by default) one whose recorded students the file lacks: writes nothing
        written = store.write_outcomes(engine, frame, require_scored=True, partial=partial, source=source)
        matches = {cohort: store.match_outcomes(engine, cohort) for cohort in cohorts}
    by_cohort = {
        cohort: _matched(config, frame[frame.cohort == cohort], matches[cohort], written.cohorts[cohort], word)
        for cohort in cohorts
    }
    for cohort, m in by_cohort.items():
        for line in m["lines"]:
            log.info("Outcomes of %s: %s", cohort, line.strip())
    return {
        "n_outcomes": written.n,
        "cohorts": cohorts,
        "at_risk_rate": float(frame.at_risk.mean()),
        "by_cohort": by_cohort,
    }


_SHOW_ROWS = 5


def _stored_words(w: dict) -> str:
    """What recording did to the outcomes of a cohort recorded before (`store.OutcomesWritten`), or nothing."""
    if not w["before"]:
        return ""
    delta = f"{w['changed'] or 'none'} changed" + (f", {w['added']} new" if w["added"] else "")
    if w["action"] == "merged":
        return (
            f"; merged with the {w['before']} recorded before ({delta}): {w['missing']} not in this file kept, "
            f"{w['n_now']} now recorded"
        )
    dropped = f": {w['missing']} not in this file deleted" if w["missing"] else ""
    return f"; they replace the {w['before']} recorded before ({delta}){dropped}"


def _matched(config: Config, part: pd.DataFrame, match: store.OutcomeMatch, written: dict, word: str) -> dict:
    """One cohort's outcomes against its scores: counts per point, the unmatched rows, and the lines to print."""
    order = {p: i for i, p in enumerate(config.points)}
    points = sorted(match.points, key=lambda p: (order.get(p, len(order)), p))
    rows = part.set_index("student_id")["row"]
    in_file = [s for s in match.unmatched if s in rows.index]  # the others were kept from before (a merge)
    unmatched = sorted(int(r) for r in rows.loc[in_file]) if in_file else []
    kept_unmatched = len(match.unmatched) - len(in_file)
    more = f" and {len(unmatched) - _SHOW_ROWS} more" if len(unmatched) > _SHOW_ROWS else ""
    named = f"{word}{'s' if len(unmatched) > 1 else ''} {', '.join(map(str, unmatched[:_SHOW_ROWS]))}{more}"
    at_risk_n = int(part.at_risk.sum())
    head = (
        f"{part.cohort.iloc[0]}: {len(part)} outcomes recorded ({at_risk_n} at risk: "
        f"{', '.join(config.dataset.at_risk_values)}){_stored_words(written)}"
    )
    missing = {p: match.points[p][0] - match.points[p][1] for p in points if match.points[p][1] < match.points[p][0]}
    matched = ", ".join(
        f"{m} of {n} scored{_at(config, p)}" if p in missing else f"{m}{_at(config, p)}"
        for p, (n, m) in ((p, match.points[p]) for p in points)
    )
    lines = [head, f"  matched to scored students: {matched}{'' if missing else ' (every scored student)'}"]
    if missing:
        counts = ", ".join(f"{k}{_at(config, p)}" for p, k in missing.items())
        where = "recorded (in this file or kept)" if written["action"] == "merged" else "in this file"
        lines.append(
            f"  scored students with no outcome {where}: {counts}; left out of the performance figures"
            + (" of those points" if any(p != "default" for p in missing) else "")
        )
    if unmatched:
        why = (
            "left before the first prediction point or registered after the last one, or an id no scored intake had"
            if any(p != "default" for p in points)
            else "no student scored in this cohort has that id"
        )
        lines.append(
            f"  {len(unmatched)} not matched to any scored student ({why}): {named}; "
            "recorded, but not used in performance figures"
        )
    if kept_unmatched:
        lines.append(
            f"  {kept_unmatched} kept from before (not in this file) not matched to any scored student; "
            "not used in performance figures"
        )
    if not match.unmatched:
        lines.append("  every outcome matched a scored student")
    return {
        "n_outcomes": int(len(part)),
        "n_at_risk": at_risk_n,
        "n_replaced": int(written["before"]),
        "stored": written,
        "points": {p: {"n_scored": match.points[p][0], "n_matched": match.points[p][1]} for p in points},
        "n_unmatched": len(unmatched) + kept_unmatched,
        "unmatched_rows": [f"{word} {r}" for r in unmatched[:_SHOW_ROWS]],
        "lines": lines,
    }


def _at(config: Config, point: str) -> str:
    """' at day 30' for a prediction point; nothing for the single default point."""
    if point == "default":
        return ""
    settings = config.point(point)
    day = settings.day if settings is not None else point_day(point)
    return f" at day {day}" if day is not None else f" at point {point}"
