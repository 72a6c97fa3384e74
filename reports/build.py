"""Report jobs: gather what a report needs from the registry and the store, then build it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from risk_model import advising, followup, store
from risk_model.config import Config, Settings
from risk_model.labels import band
from risk_model.paths import safe_name
from risk_model.registry import Bundle, Registry


def report_dir(settings: Settings, cohort: str, point: str, version: str) -> Path:
    """Where the reports of one cohort, prediction point and model version go (each a safe path name)."""
    return settings.reports_dir / safe_name(cohort) / safe_name(point) / safe_name(version)


def intake_report(settings: Settings, config: Config, intake: pd.DataFrame, *, point: str = "default") -> dict:
    """Drift of a scored intake against the training reference of the model that scored it."""
    from reports.intake import build_intake_report

    c = config.dataset
    cohort = _cohort_of(config, intake)
    scores, recorded = _scored(settings, cohort, point)
    bundle = _scoring_bundle(settings, config, scores, point)
    current = intake.merge(
        scores[["student_id", "probability"]].rename(columns={"probability": "risk"}),
        left_on=c.id_column,
        right_on="student_id",
        how="inner",
    )
    return build_intake_report(
        bundle.reference(),
        current,
        c,
        config.reports,
        report_dir(settings, cohort, point, bundle.version),
        cohort=cohort,
        model_version=bundle.version,
        validation_auc=bundle.metadata["summary"]["validation_auc"],
        outcomes_known=not recorded.empty,
        metrics=bundle.metadata["metrics"],
        importance=importance(bundle),
        k_percent=float(bundle.metadata.get("top_k_percent", config.training.top_k_percent)),
        usual_path=usual_drift_path(settings, point, bundle.version),
    )


def usual_drift_path(settings: Settings, point: str, version: str) -> Path:
    """Where a model version's drift between its past cohorts is kept for its intake reports (a cache: deleting
    it costs one measurement, about 8 s on OULAD)."""
    return settings.home / "cache" / "usual_drift" / safe_name(point) / f"{safe_name(version)}.json"


def importance(bundle: Bundle) -> dict[str, float]:
    """The model's gain importance per feature, by the contract's feature names (LightGBM keeps them
    in the same order under its own safe names)."""
    gains = bundle.booster.feature_importance("gain")
    return {f: float(g) for f, g in zip(bundle.features, gains, strict=True)}


def _cohort_of(config: Config, df: pd.DataFrame) -> str:
    cohorts = sorted(df[config.dataset.cohort_column].astype(str).unique())
    if len(cohorts) != 1:
        raise ValueError(f"a report covers one cohort; this table has {cohorts}: pass --cohort")
    return cohorts[0]


def _read(settings: Settings, cohort: str, point: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cohort's scores (student_id, probability, tier, model_version) and outcomes (student_id, at_risk)."""
    with store.opened(settings.resolved_store_url) as engine:
        return store.report_scores(engine, cohort, point), store.report_outcomes(engine, cohort)


def _scored(settings: Settings, cohort: str, point: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores, outcomes = _read(settings, cohort, point)
    if scores.empty:
        raise ValueError(f"cohort {cohort} has no scores for point {point!r}: run `student-risk score` first")
    return scores, outcomes


def _scoring_bundle(settings: Settings, config: Config, scores: pd.DataFrame, point: str) -> Bundle:
    """The model version that scored this cohort (not necessarily today's champion)."""
    version = str(scores["model_version"].iloc[0])
    return Registry(settings.registry_dir).load(version, point=point, contract=config.dataset)


def _with_outcomes(scores: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Scored students with a real outcome (student_id, at_risk, risk, tier), and the coverage counts."""
    merged = (
        scores[["student_id", "probability", "tier"]]
        .merge(outcomes[["student_id", "at_risk"]], on="student_id", how="inner")
        .rename(columns={"probability": "risk"})
    )
    merged["at_risk"] = merged["at_risk"].astype(int)
    coverage = {"n_scored": int(len(scores)), "n_outcomes": int(len(outcomes)), "n_matched": int(len(merged))}
    return merged, coverage


def _follow_up(
    settings: Settings,
    cohort: str,
    *,
    outcomes: pd.DataFrame | None = None,
    groups: pd.DataFrame | None = None,
    columns: list[str] | None = None,
    min_group_size: int = 30,
) -> dict | None:
    """What happened after the cohort's alerts (`risk_model.followup`), JSON-ready; None without alerts.
    Interventions are read without their notes."""
    with store.opened(settings.resolved_store_url) as engine:
        alerts = advising.cohort_alerts(engine, cohort)
        if alerts.empty:
            return None
        done = advising.cohort_interventions(engine, cohort)
    found = followup.follow_up(alerts, done, outcomes, groups, columns, min_group_size=min_group_size)
    return {name: followup.as_dict(f) for name, f in found.items()}


def has_outcomes(settings: Settings, cohort: str) -> bool:
    """Whether real outcomes of `cohort` are recorded in the store."""
    with store.opened(settings.resolved_store_url) as engine:
        return store.has_outcomes(engine, cohort)


def outcomes_report(settings: Settings, config: Config, cohort: str, *, point: str = "default") -> dict:
    """Real performance of a scored cohort, once its outcomes are recorded, vs. what validation promised."""
    from reports.outcomes import build_outcomes_report

    scores, outcomes = _scored(settings, cohort, point)
    if outcomes.empty:
        raise ValueError(f"cohort {cohort} has no recorded outcomes: run `student-risk outcomes` first")
    current, coverage = _with_outcomes(scores, outcomes)
    if current.empty:
        raise ValueError(f"none of the {len(outcomes)} recorded outcomes of cohort {cohort} matches a scored student")
    bundle = _scoring_bundle(settings, config, scores, point)
    high = current.loc[current["tier"] == "high", "risk"]
    out_dir = report_dir(settings, cohort, point, bundle.version)
    return build_outcomes_report(
        current,
        bundle.reference(),
        bundle.metadata,
        config.reports,
        out_dir,
        cohort=cohort,
        point=point,
        flag_threshold=float(high.min()) if len(high) else None,
        coverage=coverage,
        before=_what_was_promised(config, bundle, scores, out_dir),
        follow_up=_follow_up(settings, cohort, outcomes=outcomes),
    )


def _what_was_promised(config: Config, bundle: Bundle, scores: pd.DataFrame, out_dir: Path) -> dict:
    """The expected performance and the promise of the intake report made before outcomes (see
    `reports.promised`); without any intake report, both computed now from the stored probabilities,
    which need no outcome, but without knowing which features drifted (and said so)."""
    from reports.promised import intake_expectation
    from risk_model.estimate import expected_performance
    from risk_model.promise import make_promise

    found = intake_expectation(out_dir)
    if found is not None and found["promise"] is not None:
        when = found["created_at"] or "an unknown time"
        if found["before_outcomes"]:
            found["source"] = f"the intake report of {when}, made before the outcomes were recorded"
        else:
            found["source"] = (
                f"the intake report of {when}, built after the outcomes were recorded but from the intake's "
                "probabilities and drift only (no intake report was kept from before)"
            )
        return found
    k = float(bundle.metadata.get("top_k_percent", config.training.top_k_percent))
    expected = expected_performance(scores["probability"].to_numpy(dtype=float), k)
    promise = make_promise(bundle.metadata["metrics"], expected, importance=importance(bundle))
    return {
        "expected": expected,
        "promise": promise.to_dict(),
        "k_percent": k,
        "created_at": None,
        "before_outcomes": False,
        "source": "the stored probabilities, now: no intake report was built, so drift is not taken into account",
    }


def _measured_new_cohort(config: Config, bundle: Bundle, cohort: str, current: pd.DataFrame | None) -> dict | None:
    """The new cohort's real metrics and the interval of its AUC, if both kinds of outcome are recorded."""
    from risk_model import evaluate
    from risk_model.bootstrap import bootstrap_metrics

    if current is None or current["at_risk"].nunique() != 2:
        return None
    k = float(bundle.metadata.get("top_k_percent", config.training.top_k_percent))
    m = evaluate.metrics(current["at_risk"].to_numpy(), current["risk"].to_numpy(), k)
    sample = current.sample(min(len(current), config.reports.max_rows), random_state=0)
    ci = bootstrap_metrics(
        sample["at_risk"].to_numpy(), sample["risk"].to_numpy(), k_percent=k, n_boot=config.reports.bootstrap
    )["metrics"]["roc_auc"]
    shift = m["roc_auc"] - ci["value"]
    return {"cohort": cohort, "metrics": m, "low": ci["low"] + shift, "high": ci["high"] + shift}


def _new_cohort_from_outcomes(outcomes: dict, cohort: str) -> dict:
    """The same, from the numbers of an outcomes report just built."""
    real = outcomes["real"]
    metrics = {m: v["value"] for m, v in real.items()} | {
        "n": outcomes["n_students"],
        "base_rate": outcomes["base_rate"],
    }
    return {"cohort": cohort, "metrics": metrics, "low": real["roc_auc"]["low"], "high": real["roc_auc"]["high"]}


def generalization_report(
    settings: Settings, config: Config, cohort: str, *, point: str = "default", outcomes: dict | None = None
) -> dict:
    """Train vs. cross-validated vs. backtest (vs. the new cohort's real outcomes) for the model that scored `cohort`.

    `outcomes`: the outcomes report's numbers, if just built (saves reading and measuring the cohort again)."""
    from reports.generalization import build_generalization_report

    if outcomes is not None:  # the outcomes report already measured this cohort: reuse its numbers
        bundle = Registry(settings.registry_dir).load(outcomes["model_version"], point=point, contract=config.dataset)
        new: dict | None = _new_cohort_from_outcomes(outcomes, cohort)
    else:
        scores, recorded = _scored(settings, cohort, point)
        bundle = _scoring_bundle(settings, config, scores, point)
        current = _with_outcomes(scores, recorded)[0] if not recorded.empty else None
        new = _measured_new_cohort(config, bundle, cohort, current)
    return build_generalization_report(
        bundle.metadata,
        config.training,
        config.reports,
        report_dir(settings, cohort, point, bundle.version),
        cohort=cohort,
        point=point,
        new=new,
    )


def _flag_rule(config: Config) -> str:
    """How a student came to be flagged, in words."""
    s = config.scoring
    if s.tier_mode == "capacity":
        return f"in the high-risk tier (the {s.high_share:.0%} highest-risk students of their cohort)"
    return f"in the high-risk tier (predicted risk at least {s.high_threshold:.0%})"


def _fairness_frame(
    config: Config, bundle: Bundle, cohort: str, intake: pd.DataFrame, scores: pd.DataFrame, recorded: pd.DataFrame
) -> tuple[pd.DataFrame, str, str]:
    """(at_risk, risk, flagged and the sensitive columns per student; source in words; basis in a few words):
    the cohort's real outcomes when both kinds are recorded, else the training reference (out-of-fold risk)."""
    from risk_model.score import tiers

    c = config.dataset
    sensitive = [col for col in c.sensitive_columns if col in intake.columns]
    if not recorded.empty:
        current = _with_outcomes(scores, recorded)[0].merge(
            intake[[c.id_column, *sensitive]].astype({c.id_column: str}),
            left_on="student_id",
            right_on=c.id_column,
            how="inner",
        )
        if len(current) and current["at_risk"].nunique() == 2:
            frame = current.assign(flagged=current["tier"] == "high")[["at_risk", "risk", "flagged", *sensitive]]
            return frame, f"cohort {cohort}'s real outcomes", f"cohort {cohort}'s real outcomes"
    ref = bundle.reference()
    flagged = pd.Series(False, index=ref.index)
    for _, idx in ref.groupby(c.cohort_column).groups.items():
        flagged.loc[idx] = tiers(ref.loc[idx, "risk"].to_numpy(), config.scoring) == "high"
    frame = ref.assign(flagged=flagged.to_numpy())[["at_risk", "risk", "flagged", *sensitive]]
    source = (
        f"the training cohorts ({', '.join(bundle.metadata['training_cohorts'])}) with out-of-fold risk, "
        f"because cohort {cohort} has no real outcomes yet"
    )
    return frame, source, f"training cohorts; {cohort} has no real outcomes yet"


def fairness_report(settings: Settings, config: Config, intake: pd.DataFrame, *, point: str = "default") -> dict:
    """Per-group metrics for the sensitive columns: on the cohort's real outcomes when recorded, else on the
    training reference (out-of-fold risk)."""
    from reports.fairness import build_fairness_report

    cohort = _cohort_of(config, intake)
    scores, recorded = _scored(settings, cohort, point)
    bundle = _scoring_bundle(settings, config, scores, point)
    frame, source, basis = _fairness_frame(config, bundle, cohort, intake, scores, recorded)
    c = config.dataset
    sensitive = [col for col in c.sensitive_columns if col in intake.columns]
    groups = pd.DataFrame({"student_id": intake[c.id_column].astype(str).to_numpy()})
    for col in sensitive:  # the same groups as the fairness tables: value labels and bands
        groups[col] = band(c, col, intake[col]).to_numpy()
    follow_up = _follow_up(
        settings, cohort, groups=groups, columns=sensitive, min_group_size=config.reports.min_group_size
    )
    return build_fairness_report(
        frame,
        config.dataset,
        config.reports,
        report_dir(settings, cohort, point, bundle.version),
        cohort=cohort,
        model_version=bundle.version,
        point=point,
        source=source,
        basis=basis,
        flag_rule=_flag_rule(config),
        outcomes_known=not recorded.empty,
        follow_up=follow_up,
    )


def rebuild_index(settings: Settings) -> dict:
    """Rewrite reports_dir/index.html from the reports on disk, with the alerts stored per cohort and point."""
    from reports.index import build_index

    with store.opened(settings.resolved_store_url) as engine:
        alerts = advising.alert_counts(engine)
    return build_index(settings.reports_dir, alerts=alerts)
