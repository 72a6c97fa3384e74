"""OULAD forward backtest with clicks at several prediction days: the product against the bar.

Each presentation in the data folder after the first is predicted by a model trained on every
presentation before it (here: 2013B -> 2013J, 2013B + 2013J -> 2014B; a later presentation's raw
files added to the folder are checked the same way), at each prediction day, with exactly what `student-risk train` runs (the backtest is part of
training). The bar: plain logistic regression and a regularized LightGBM (fixed parameters,
nothing tuned) on simple click and assessment features, written here from the recipe of
`../shared/reference/oulad_clicks_reference.py`. Its population differs slightly (day 0 keeps
students who left before the start; later days drop those who left on the day itself), so
every comparison is made on the students both score. Per day and test presentation: the
product's AUC, each reference's AUC on the same students, product minus the better reference
with a 95 % paired bootstrap interval (the same resampled students score both), the CV AUC the
product promised before seeing the test presentation, and the model family it chose. Then the
wall time and peak memory of the whole yearly run (train + score + report for every day).

    python bench/bench_oulad.py [--data ../shared/data/oulad] [--days 0 30 60 90 120]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def splits(data: Path, cohort_key) -> dict[str, list[str]]:
    """Each presentation after the first, with every presentation before it (the forward backtest's splits)."""
    order = sorted(
        pd.read_csv(data / "studentInfo.csv", usecols=["code_presentation"]).code_presentation.unique(), key=cohort_key
    )
    return {test: order[:i] for i, test in enumerate(order) if i > 0}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- The bar: plain models on simple click + assessment features (our own implementation) ---------------
SIMPLE_CATS = ["code_module", "gender", "region", "highest_education", "imd_band", "age_band", "disability"]
SIMPLE_TYPES = ["oucontent", "forumng", "homepage", "resource", "subpage", "quiz", "url", "ouwiki", "oucollaborate"]
KEY = ["code_module", "code_presentation", "id_student"]


def simple_tables(data: Path, days: list[int]) -> dict[int, tuple[pd.DataFrame, list[str]]]:
    """Per day: every registration with simple facts known by then (the reference's recipe, our code).

    Day 0 keeps everyone; later days drop those unregistered on or before the day. Clicks by day N:
    total, last 14 days, active days, sites, first and last day, per type, log clicks vs the module median.
    Assessments (days > 0): submitted, mean, min, late, weighted sum, due, missing."""
    info = pd.read_csv(data / "studentInfo.csv").merge(pd.read_csv(data / "studentRegistration.csv"), on=KEY)
    info["y"] = info.final_result.isin(["Fail", "Withdrawn"]).astype(int)
    plan = pd.read_csv(data / "assessments.csv")
    subs = pd.read_csv(data / "studentAssessment.csv", na_values=["?"]).merge(plan, on="id_assessment")
    clicks = pd.read_csv(data / "studentVle.csv.gz").merge(pd.read_csv(data / "vle.csv")[["id_site", "activity_type"]])
    out = {}
    for day in days:
        t, num = info.copy(), ["num_of_prev_attempts", "studied_credits", "date_registration"]
        v = clicks[clicks.date <= day]
        g = v.groupby(KEY).agg(
            clicks=("sum_click", "sum"),
            active_days=("date", "nunique"),
            n_sites=("id_site", "nunique"),
            last_click=("date", "max"),
            first_click=("date", "min"),
        )
        g["clicks_14d"] = v[v.date > day - 14].groupby(KEY).sum_click.sum()
        per_type = v[v.activity_type.isin(SIMPLE_TYPES)].pivot_table(
            index=KEY, columns="activity_type", values="sum_click", aggfunc="sum"
        )
        g = g.join(per_type.add_prefix("clicks_"))
        t = t.merge(g.reset_index(), on=KEY, how="left")
        counts = ["clicks", "active_days", "n_sites", "clicks_14d", *[f"clicks_{x}" for x in per_type.columns]]
        t[counts] = t[counts].fillna(0)
        t["days_since_click"] = day - t.last_click
        median = t.groupby(["code_module", "code_presentation"]).clicks.transform("median")
        t["clicks_rel"] = np.log1p(t.clicks) - np.log1p(median)
        num += [*counts, "days_since_click", "first_click", "clicks_rel"]
        if day > 0:
            t = t[~(t.date_unregistration <= day)]
            s = subs[subs.date_submitted <= day].assign(late=lambda x: (x.date_submitted > x.date).astype(int))
            s = s.assign(wscore=s.score * s.weight)
            a = s.groupby(KEY).agg(
                n_sub=("score", "size"),
                mean_score=("score", "mean"),
                min_score=("score", "min"),
                n_late=("late", "sum"),
                wsum=("wscore", "sum"),
            )
            due = plan[plan.date <= day].groupby(["code_module", "code_presentation"]).size().rename("n_due")
            t = t.merge(a.reset_index(), on=KEY, how="left").join(due, on=["code_module", "code_presentation"])
            t[["n_sub", "n_late", "wsum", "n_due"]] = t[["n_sub", "n_late", "wsum", "n_due"]].fillna(0)
            t["missing"] = t.n_due - t.n_sub
            num += ["n_sub", "mean_score", "min_score", "n_late", "wsum", "n_due", "missing"]
        t["id"] = t.code_module + "-" + t.id_student.astype(str)
        out[day] = (t.reset_index(drop=True), num)
    return out


def simple_models(t: pd.DataFrame, num: list[str], train_on: list[str], test: str) -> pd.DataFrame:
    """Plain logistic regression and a regularized LightGBM (fixed, untuned parameters) on the simple table."""
    tr, te = t[t.code_presentation.isin(train_on)], t[t.code_presentation == test]
    cols = SIMPLE_CATS + num
    lr = make_pipeline(
        ColumnTransformer(
            [
                ("c", OneHotEncoder(handle_unknown="ignore"), SIMPLE_CATS),
                ("n", make_pipeline(SimpleImputer(), StandardScaler()), num),
            ]
        ),
        LogisticRegression(max_iter=3000),
    ).fit(tr[cols], tr.y)

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        X = df[cols].copy()
        for c in SIMPLE_CATS:
            X[c] = pd.Categorical(
                X[c].where(X[c].isin(tr[c].dropna().unique())), categories=sorted(tr[c].dropna().unique())
            )
        return X

    gbm = lgb.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=7,
        min_child_samples=200,
        reg_lambda=5,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        verbose=-1,
    ).fit(frame(tr), tr.y)
    return pd.DataFrame(
        {
            "id": te.id.to_numpy(),
            "cohort": test,
            "y_ref": te.y.to_numpy(),
            "ref_lr": lr.predict_proba(te[cols])[:, 1],
            "ref_lgb": gbm.predict_proba(frame(te))[:, 1],
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "oulad")
    ap.add_argument("--config", type=Path, default=REPO / "risk_model" / "examples" / "oulad.toml")
    ap.add_argument("--days", type=int, nargs="*", default=None)
    ap.add_argument("--skip-yearly", action="store_true", help="only the backtest table")
    ap.add_argument("--skip-backtest", action="store_true", help="only the yearly run")
    args = ap.parse_args()

    from promise_table import HEADER, earlier_metrics, promise_line

    from risk_model import jobs
    from risk_model.bootstrap import paired_auc_difference
    from risk_model.config import load_config
    from risk_model.train import train

    config = load_config(args.config)
    split = splits(args.data, config.dataset.cohort_key)
    latest = list(split)[-1]
    days = args.days or config.source.prediction_days
    if not args.skip_backtest:
        t0 = time.perf_counter()
        simple = simple_tables(args.data, days)
        print(
            f"OULAD backtest with clicks, {os.cpu_count()} cores; product = {args.config.name}; "
            f"reference tables built in {time.perf_counter() - t0:.0f} s"
        )
        print(
            f"{'day':>4} {'test':>6} {'n':>6} {'product':>8} {'ref LR':>7} {'ref LGB':>8} "
            f"{'product-better [95% paired]':>29} {'CV promise':>11}  family"
        )
        wins, promise_lines = [], []
        backtest_s = 0.0
        for day in days:
            point = f"day{day}"
            t0 = time.perf_counter()
            df = jobs.prepare(config, args.data, stage="train", point=point)
            r = train(df, config, progress=lambda _: None)
            backtest_s += time.perf_counter() - t0
            t, num = simple[day]
            for cohort, train_on in split.items():
                ours = r.backtest_predictions[r.backtest_predictions.cohort == cohort]
                both = ours.merge(simple_models(t, num, train_on, cohort), on=["id", "cohort"], how="inner")
                assert (both.y == both.y_ref).all(), "the two populations disagree on an outcome"
                y = both.y.to_numpy()
                auc = {k: roc_auc_score(y, both[k]) for k in ("lightgbm", "ref_lr", "ref_lgb")}
                better = "ref_lr" if auc["ref_lr"] >= auc["ref_lgb"] else "ref_lgb"
                d = paired_auc_difference(y, both.lightgbm.to_numpy(), both[better].to_numpy(), n_boot=1000)
                promised = r.metrics["promised"][cohort]["roc_auc"]
                family = r.summary["family_by_cohort"].get(cohort, "?")
                ok = d["value"] > 0
                if cohort == latest:
                    wins.append(ok)
                mine = r.backtest_predictions[r.backtest_predictions.cohort == cohort]  # every student it scored
                promise_lines.append(
                    f"{day:>4} "
                    + promise_line(
                        cohort,
                        mine.y.to_numpy(),
                        mine.lightgbm.to_numpy(),
                        earlier_metrics(r.metrics, cohort),
                        config.training.top_k_percent,
                        r.summary["calibration_by_cohort"][cohort]["name"],
                    )
                )
                print(
                    f"{day:>4} {cohort:>6} {len(both):>6} {auc['lightgbm']:>8.3f} {auc['ref_lr']:>7.3f} "
                    f"{auc['ref_lgb']:>8.3f}   {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                    f"{'*' if d['low'] > 0 else ' '} {promised:>10.3f}  {family}"
                    f"{'' if ok else '   (below the bar)'}",
                    flush=True,
                )
            print(
                f"     chosen for the day-{day} champion: {r.summary.get('family', 'lightgbm')}"
                f" ({r.summary.get('family_why', '')})",
                flush=True,
            )
        print(
            f"backtest wall time {backtest_s:.0f} s; * = interval above 0; beats the better reference at every "
            f"day on {latest}: {all(wins)}"
        )
        print(HEADER, *promise_lines, sep="\n")
    if args.skip_yearly:
        return

    # The whole yearly run as a user runs it: train on every earlier presentation, score the latest, report.
    from reports import build
    from risk_model.config import Settings

    home = Path(tempfile.mkdtemp(prefix="oulad-bench-"))
    settings = Settings(home=home)
    start_peak = peak_mb()
    t0 = time.perf_counter()
    stated = {}
    for day in days:
        point = f"day{day}"
        hist = jobs.prepare(config, args.data, stage="train", point=point, cohorts=split[latest])
        jobs.train_and_register(settings, config, hist, point=point, progress=lambda _: None)
        intake = jobs.prepare(config, args.data, stage="score", point=point, cohorts=[latest])
        jobs.score_and_store(settings, config, intake, point=point, progress=lambda _: None)
        stated[day] = build.intake_report(settings, config, intake, point=point)["promise"]
    print(
        f"yearly run on OULAD with clicks ({len(days)} prediction days: train {'+'.join(split[latest])}, "
        f"score + report {latest}): "
        f"{time.perf_counter() - t0:.0f} s wall, peak memory {peak_mb():.0f} MB "
        f"(process peak before it {start_peak:.0f} MB; run with --skip-backtest for the yearly run alone); "
        f"output in {home}"
    )
    # What the intake reports promised on the day of scoring (drift included), against the truth.
    from risk_model import store
    from risk_model.promise import Promise

    c = config.dataset
    print(f"{'day':>4} {'test':>6}  promise in the intake report (drift included)  {'truth':>6}  inside")
    for day, promise in stated.items():
        truth_rows = jobs.prepare(config, args.data, stage="train", point=f"day{day}", cohorts=[latest])
        with store.opened(settings.resolved_store_url) as engine:
            scores = store.read_scores(engine, cohort=latest, point=f"day{day}")
        both = scores.merge(truth_rows, left_on="student_id", right_on=c.id_column)
        truth = roc_auc_score(both[c.outcome_column].isin(c.at_risk_values), both["probability"])
        inside = Promise(**promise).contains(truth)
        words = (
            f"{promise['status']} {promise['low']:.2f}-{promise['high']:.2f}"
            if promise["status"] != "withdrawn"
            else "withdrawn"
        )
        print(
            f"{day:>4} {latest:>6}  {words:<17} drifted {promise['drifted_weight']:.0%}, between past cohorts "
            f"{promise['usual_drifted_weight']:.0%}   {truth:>6.2f}  {'yes' if inside else 'NO'}"
        )


if __name__ == "__main__":
    main()
