"""The OULAD source: known-by-day-N only, the right students on the list, sane on the real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk_model.config import load_config
from risk_model.schema import validate
from risk_model.sources.oulad import build_table

REPO = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "oulad"
DAYS = [0, 30, 60, 90, 120]
KEY = ["code_module", "code_presentation", "id_student"]


@pytest.fixture(scope="module")
def contract():
    """The OULAD contract without its click features: these tests build tables from the student files only
    (clicks: tests/test_activity.py)."""
    config = load_config(REPO / "risk_model" / "examples" / "oulad.toml")
    clicks = set(config.activity.feature_labels)
    c = config.dataset
    return c.model_copy(update={"numeric_features": [f for f in c.numeric_features if f not in clicks]})


# --- raw files in OULAD's format -------------------------------------------------------------------

COURSES = pd.DataFrame(
    {
        "code_module": ["AAA", "BBB", "AAA"],
        "code_presentation": ["2013J", "2013J", "2014B"],
        "module_presentation_length": [200, 180, 190],
    }
)


def _assessments() -> pd.DataFrame:
    rows = []
    for mod, pres, base in [("AAA", "2013J", 0), ("BBB", "2013J", 10), ("AAA", "2014B", 20)]:
        plan = [("TMA", 10, 20), ("CMA", 25, 0), ("TMA", 40, 30), ("TMA", 70, 50), ("Exam", None, 100)]
        if mod == "BBB":
            plan = [("TMA", 15, 50), ("CMA", 30, 5), ("TMA", 45, 50), ("Exam", None, 100)]
        for i, (kind, date, weight) in enumerate(plan, start=1):
            rows.append((mod, pres, base + i, kind, date, weight))
    cols = ["code_module", "code_presentation", "id_assessment", "assessment_type", "date", "weight"]
    return pd.DataFrame(rows, columns=cols).astype({"date": "float64"})


def _random_raw(seed: int = 7) -> dict[str, pd.DataFrame]:
    """About 40 students per module-presentation; some share an id_student across modules."""
    rng = np.random.default_rng(seed)
    assessments = _assessments()
    info, reg, subs = [], [], []
    for _, course in COURSES.iterrows():
        mod, pres, length = course["code_module"], course["code_presentation"], course["module_presentation_length"]
        ids = rng.choice(np.arange(1000, 1090), size=40, replace=False)
        for sid in ids:
            r = float(rng.integers(-120, 40)) if rng.random() > 0.05 else np.nan
            u = np.nan
            if rng.random() < 0.35:
                u = float(max(rng.integers(-40, 150), -200 if np.isnan(r) else r))
            result = "Withdrawn" if not np.isnan(u) else rng.choice(["Distinction", "Pass", "Fail"])
            info.append(
                {
                    "code_module": mod,
                    "code_presentation": pres,
                    "id_student": sid,
                    "gender": rng.choice(["F", "M"]),
                    "region": rng.choice(["Scotland", "Wales", "London Region"]),
                    "highest_education": rng.choice(["A Level or Equivalent", "HE Qualification"]),
                    "imd_band": rng.choice(["0-10%", "10-20", "90-100%", None]),
                    "age_band": rng.choice(["0-35", "35-55", "55<="]),
                    "num_of_prev_attempts": int(rng.integers(0, 3)),
                    "studied_credits": int(rng.choice([30, 60, 120])),
                    "disability": rng.choice(["Y", "N"]),
                    "final_result": result,
                }
            )
            reg.append(
                {
                    "code_module": mod,
                    "code_presentation": pres,
                    "id_student": sid,
                    "date_registration": r,
                    "date_unregistration": u,
                }
            )
            banked = rng.random() < 0.08
            for _, a in assessments[
                (assessments.code_module == mod) & (assessments.code_presentation == pres)
            ].iterrows():
                due = length if np.isnan(a["date"]) else a["date"]
                if banked and a["assessment_type"] != "Exam" and due < 40:
                    subs.append((a["id_assessment"], sid, -1, 1, float(rng.integers(40, 100))))
                elif rng.random() < 0.8:
                    score = float(rng.integers(0, 101)) if rng.random() > 0.05 else np.nan
                    subs.append((a["id_assessment"], sid, int(due + rng.integers(-15, 12)), 0, score))
    sa = pd.DataFrame(subs, columns=["id_assessment", "id_student", "date_submitted", "is_banked", "score"])
    return {
        "studentInfo": pd.DataFrame(info),
        "studentRegistration": pd.DataFrame(reg),
        "assessments": assessments,
        "studentAssessment": sa,
        "courses": COURSES,
    }


def _write(raw: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in raw.items():
        # OULAD writes an empty field for a missing date and "?" for a missing score.
        df.to_csv(folder / f"{name}.csv", index=False, na_rep="?" if name == "studentAssessment" else "")
    return folder


def _read_back(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_csv(folder / f"{name}.csv", na_values=["?"] if name == "studentAssessment" else None)
        for name in ["studentInfo", "studentRegistration", "assessments", "studentAssessment", "courses"]
    }


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(_random_raw(), tmp_path_factory.mktemp("raw"))


def _rewrite_future(raw: dict[str, pd.DataFrame], day: int, seed: int = 1) -> dict[str, pd.DataFrame]:
    """A copy of the raw files in which everything after `day`, and every outcome, is different."""
    rng = np.random.default_rng(seed)
    raw = {name: df.copy() for name, df in raw.items()}

    sa = raw["studentAssessment"]
    future = (sa["is_banked"] == 0) & (sa["date_submitted"] > day)
    sa.loc[future, "score"] = 100 - sa.loc[future, "score"].fillna(50)
    sa.loc[future, "date_submitted"] += rng.integers(0, 20, future.sum())
    raw["studentAssessment"] = sa.drop(sa.index[future & (rng.random(len(sa)) < 0.4)])

    a = raw["assessments"].merge(raw["courses"], on=["code_module", "code_presentation"])
    due_later = a["date"].fillna(a["module_presentation_length"]) > day
    a.loc[due_later, "weight"] = a.loc[due_later, "weight"] * 3 + 7
    a.loc[due_later & a["date"].notna(), "date"] += 5
    raw["assessments"] = a.drop(columns="module_presentation_length")

    reg = raw["studentRegistration"]
    u = reg["date_unregistration"]
    leaves_later = u >= day
    reg.loc[leaves_later, "date_unregistration"] = np.where(rng.random(len(reg)) < 0.5, np.nan, u + 9)[leaves_later]
    stays = u.isna()
    reg.loc[stays & (rng.random(len(reg)) < 0.3), "date_unregistration"] = day + 17
    joins_later = reg["date_registration"] > day
    reg.loc[joins_later, "date_registration"] += 11

    info = raw["studentInfo"]
    info["final_result"] = rng.permutation(info["final_result"].to_numpy())
    return raw


# --- 1. no leakage -------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [0, 12, 30, 45, 100])
def test_day_n_table_ignores_everything_after_day_n(raw_dir: Path, tmp_path: Path, day: int) -> None:
    changed = _write(_rewrite_future(_read_back(raw_dir), day), tmp_path / "changed")
    before = build_table(raw_dir, day, with_outcome=False)
    after = build_table(changed, day, with_outcome=False)
    pd.testing.assert_frame_equal(before, after)
    assert len(before) > 50
    # With the outcome, only the outcome may differ.
    pd.testing.assert_frame_equal(
        build_table(raw_dir, day).drop(columns="final_result"), build_table(changed, day).drop(columns="final_result")
    )
    # The rewrite has teeth: a table built later sees the changes.
    assert not build_table(raw_dir, day + 40, with_outcome=False).equals(
        build_table(changed, day + 40, with_outcome=False)
    )


# --- 2. the outcome is never a feature -----------------------------------------------------------


def _auc(y: pd.Series, x: pd.Series) -> float:
    """Area under the ROC curve of `x` for `y` (Mann-Whitney, ties averaged); NaN ranked lowest."""
    ranks = x.fillna(-np.inf).rank()
    pos = int(y.sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def _leak_check(table: pd.DataFrame, contract) -> None:
    assert contract.outcome_column not in contract.features
    y = table[contract.outcome_column].isin(contract.at_risk_values)
    for col in contract.features:
        x = table[col]
        if x.nunique(dropna=False) <= 1:
            continue  # a constant (n_due on day 0) says nothing about anyone
        # Not a function of the outcome ...
        assert table.groupby(contract.outcome_column)[col].nunique(dropna=False).max() > 1, col
        # ... and does not separate at-risk: no pure category, no threshold (AUC far from 0 and 1).
        if col in contract.numeric_features:
            auc = _auc(y, x)
            assert 0.1 < auc < 0.9, f"{col} alone separates at-risk (AUC {auc:.3f})"
        else:
            assert y.groupby(x).nunique().max() > 1, col


def test_outcome_absent_when_not_asked(raw_dir: Path) -> None:
    assert "final_result" not in build_table(raw_dir, 30, with_outcome=False).columns


def test_outcome_is_not_a_feature_synthetic(raw_dir: Path, contract) -> None:
    for day in DAYS:
        _leak_check(build_table(raw_dir, day), contract)


# --- 3. who is on the day-N list, and what their row says ------------------------------------------


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    """Four students in one module, with hand-computed expectations."""
    info = pd.DataFrame(
        {
            "code_module": "AAA",
            "code_presentation": "2013J",
            "id_student": [1, 2, 3, 4],
            "gender": "F",
            "region": "Wales",
            "highest_education": "HE Qualification",
            "imd_band": [None, "10-20", "0-10%", "0-10%"],
            "age_band": "0-35",
            "num_of_prev_attempts": 0,
            "studied_credits": 60,
            "disability": "N",
            "final_result": ["Pass", "Pass", "Withdrawn", "Fail"],
        }
    )
    reg = pd.DataFrame(
        {
            "code_module": "AAA",
            "code_presentation": "2013J",
            "id_student": [1, 2, 3, 4],
            "date_registration": [-50, -10, -20, 30],
            "date_unregistration": [np.nan, np.nan, 5, np.nan],
        }
    )
    sa = pd.DataFrame(
        [
            (1, 1, 12, 0, 60.0),  # due 10: late
            (2, 1, 20, 0, 80.0),  # CMA due 25, weight 0
            (4, 1, 30, 0, 90.0),  # due 70, submitted early
            (1, 2, 9, 0, 80.0),
            (2, 2, 25, 0, np.nan),  # "?" score
            (3, 2, -1, 1, 70.0),  # banked from an earlier attempt
            (1, 3, 3, 0, 20.0),  # student 3 leaves on day 5
        ],
        columns=["id_assessment", "id_student", "date_submitted", "is_banked", "score"],
    )
    raw = {
        "studentInfo": info,
        "studentRegistration": reg,
        "assessments": _assessments().query("code_module == 'AAA' and code_presentation == '2013J'"),
        "studentAssessment": sa,
        "courses": COURSES,
    }
    return _write(raw, tmp_path / "small")


def _ids(folder: Path, day: int) -> list[str]:
    return build_table(folder, day)["enrolment_id"].tolist()


def test_unregistered_before_day_n_are_left_out(small_dir: Path) -> None:
    assert "AAA-3" in _ids(small_dir, 0)
    assert "AAA-3" in _ids(small_dir, 5)  # unregisters on day 5: still on that day's list
    assert "AAA-3" not in _ids(small_dir, 6)


def test_registered_by_day_n_are_in(small_dir: Path) -> None:
    assert "AAA-4" not in _ids(small_dir, 29)
    assert "AAA-4" in _ids(small_dir, 30)  # registers on day 30
    assert _ids(small_dir, 45) == ["AAA-1", "AAA-2", "AAA-4"]


def test_features_by_hand(small_dir: Path) -> None:
    t = build_table(small_dir, 45).set_index("enrolment_id")
    s1, s2 = t.loc["AAA-1"], t.loc["AAA-2"]
    # Due by 45: assessments 1 (w20), 2 (w0), 3 (w30).
    assert (s1.n_due, s1.n_submitted, s1.n_missing, s1.n_late, s1.n_banked) == (3, 3, 1, 1, 0)
    assert s1.score_mean == pytest.approx(230 / 3) and s1.score_min == 60 and s1.score_last == 90
    assert s1.weighted_score == pytest.approx((20 * 60 + 0 * 80 + 30 * 0) / 50)
    assert s1.days_since_last_submission == 15
    assert (s2.n_due, s2.n_submitted, s2.n_missing, s2.n_late, s2.n_banked) == (3, 3, 0, 0, 1)
    assert s2.score_mean == 75 and s2.score_min == 70 and s2.score_last == 80
    assert s2.weighted_score == pytest.approx((20 * 80 + 30 * 70) / 50)
    # Among the three on the day-45 list: AAA-4 (registered day 30, nothing submitted: 0) < AAA-1 (24) < AAA-2 (74).
    assert t.weighted_score_pct_peers.to_dict() == pytest.approx({"AAA-1": 2 / 3, "AAA-2": 1.0, "AAA-4": 1 / 3})
    assert s2.days_since_last_submission == 20  # the banked result is not a submission this time
    # Peers on assessment 1 include student 3, who has left: mean(60, 80, 20).
    assert s1.score_vs_peers == pytest.approx((60 - 160 / 3) / 3)
    assert s2.score_vs_peers == pytest.approx((80 - 160 / 3) / 2)
    assert s1.imd_band == "missing" and s2.imd_band == "10-20%"
    assert s1.cohort == "2013J" and s1.code_module == "AAA"


def test_start_month_is_read_from_the_presentation_code(raw_dir: Path, tmp_path: Path) -> None:
    """B presentations start in February, J in October (the dataset's documentation); a letter it does
    not document is 'unknown', never a guess. Known before the start, so the same on every day."""
    t = build_table(raw_dir, 0)
    assert dict(t.groupby("cohort").start_month.unique().map(list)) == {"2013J": ["October"], "2014B": ["February"]}
    later = build_table(raw_dir, 120)
    assert (later.start_month == later.cohort.map({"2013J": "October", "2014B": "February"})).all()
    raw = _read_back(raw_dir)
    for df in raw.values():
        if "code_presentation" in df.columns:
            df["code_presentation"] = df["code_presentation"].replace({"2014B": "2014X"})
    odd = build_table(_write(raw, tmp_path / "odd"), 0)
    assert set(odd.loc[odd.cohort == "2014X", "start_month"]) == {"unknown"}


def test_weighted_score_counts_each_assessment_equally_while_none_due_carries_weight(
    small_dir: Path, tmp_path: Path
) -> None:
    """Module GGG's marked assignments all weigh 0: its students must still get a weighted score
    (NaN there read as "no score" to the model and put a whole unseen module at ~0.94 risk)."""
    raw = _read_back(small_dir)
    raw["assessments"].loc[raw["assessments"]["id_assessment"] == 1, "weight"] = 0.0
    folder = _write(raw, tmp_path / "zero_weight")
    t25 = build_table(folder, 25).set_index("enrolment_id")
    # Due by 25: assessments 1 and 2, both weight 0, so each counts once; missed counts as 0, "?" is left out.
    assert t25.loc["AAA-1"].weighted_score == pytest.approx((60 + 80) / 2)
    assert t25.loc["AAA-2"].weighted_score == pytest.approx(80)
    # Once an assessment with weight falls due (3: weight 30, day 40), the plan's weights apply.
    t45 = build_table(folder, 45).set_index("enrolment_id")
    assert t45.loc["AAA-1"].weighted_score == pytest.approx((0 * 60 + 0 * 80 + 30 * 0) / 30)  # missed 3
    assert t45.loc["AAA-2"].weighted_score == pytest.approx(30 * 70 / 30)  # 3 banked at 70


def test_day_zero_has_the_same_columns_and_only_banked_results(small_dir: Path, raw_dir: Path) -> None:
    t0, t60 = build_table(small_dir, 0).set_index("enrolment_id"), build_table(small_dir, 60).set_index("enrolment_id")
    assert list(t0.columns) == list(t60.columns)
    assert (t0.dtypes == t60.dtypes).all()
    assert t0.loc["AAA-1"].n_submitted == 0 and np.isnan(t0.loc["AAA-1"].score_mean)
    assert t0.loc["AAA-2"].n_submitted == 1 and t0.loc["AAA-2"].score_mean == 70
    assert (t0.n_due == 0).all() and t0.weighted_score.isna().all()
    assert t0.days_since_last_submission.isna().all()
    assert list(build_table(raw_dir, 0).columns) == list(build_table(raw_dir, 120).columns)


def test_columns_each_have_one_role_and_pass_the_contract(raw_dir: Path, contract) -> None:
    c = contract
    roles = [
        [c.id_column],
        [c.cohort_column],
        [c.outcome_column],
        c.numeric_features,
        c.categorical_features,
        c.sensitive_columns,
        c.drop_columns,
    ]
    named = [col for role in roles for col in role]
    assert len(named) == len(set(named))
    for day in [0, 60]:
        table = build_table(raw_dir, day)
        assert sorted(table.columns) == sorted(named)
        assert all(table[col].dtype == "float64" for col in c.numeric_features)
        assert all(pd.api.types.is_string_dtype(table[col]) for col in c.categorical + c.sensitive_columns)
        assert not table.duplicated([c.cohort_column, c.id_column]).any()
        validate(table, c, stage="train")
        validate(build_table(raw_dir, day, with_outcome=False), c, stage="score")


def test_presentations_filter_keeps_the_same_rows(raw_dir: Path) -> None:
    full = build_table(raw_dir, 30)
    only = build_table(raw_dir, 30, presentations=["2014B"])
    assert set(only.cohort) == {"2014B"}
    pd.testing.assert_frame_equal(only, full[full.cohort == "2014B"].reset_index(drop=True))
    assert len(build_table(raw_dir, 30, presentations=["2099J"])) == 0


# --- 4. the real files -----------------------------------------------------------------------------


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real OULAD files not at {REAL}")
def test_real_oulad(contract, tmp_path: Path) -> None:
    info = pd.read_csv(REAL / "studentInfo.csv")
    reg = pd.read_csv(REAL / "studentRegistration.csv")
    assert len(info) == 21_333
    raw_share = info.groupby("code_presentation")["final_result"].apply(lambda s: s.isin(["Fail", "Withdrawn"]).mean())
    assert raw_share.round(2).to_dict() == {"2013B": 0.55, "2013J": 0.49, "2014B": 0.57}

    t0 = build_table(REAL, 0)
    # Day 0: everyone minus those who left before the start and those who register later.
    left = (reg["date_unregistration"] < 0).sum()
    later = (reg["date_registration"] > 0).sum()
    assert (left, later) == (1783, 103)
    assert len(t0) == 21_333 - left - later == 19_447
    assert t0.groupby("cohort").size().to_dict() == {"2013B": 4372, "2013J": 8120, "2014B": 6955}
    # Those left out before the start all withdrew, so the day-0 at-risk share is a little lower.
    share = t0.groupby("cohort")["final_result"].apply(lambda s: s.isin(["Fail", "Withdrawn"]).mean())
    assert share.round(3).to_dict() == {"2013B": 0.524, "2013J": 0.451, "2014B": 0.519}
    assert ((raw_share - share) > 0).all() and ((raw_share - share) < 0.06).all()

    for day in DAYS:
        _leak_check(build_table(REAL, day), contract)

    # No leakage on the real files too, at one day.
    changed = _write(_rewrite_future(_read_back(REAL), 60), tmp_path / "changed")
    pd.testing.assert_frame_equal(
        build_table(REAL, 60, with_outcome=False), build_table(changed, 60, with_outcome=False)
    )


@pytest.mark.slow  # the CLI end to end on the real files: about a minute
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real OULAD files not at {REAL}")
def test_oulad_by_configuration_alone_train_score_report_with_the_cli(tmp_path: Path) -> None:
    """What the README shows a user run on OULAD, with the shipped contract: train on 2013B + 2013J,
    score and report 2014B, one champion per prediction day, clicks included. Day 0 has no assessment
    due (and no click trend yet), so those features are empty on both sides: the drift report names
    them instead of failing."""
    import re

    from prefect.testing.utilities import prefect_test_harness
    from typer.testing import CliRunner

    from cli.main import app
    from risk_model import store
    from risk_model.config import Settings

    shipped = (Path(__file__).resolve().parents[1] / "risk_model" / "examples" / "oulad.toml").read_text()
    config = tmp_path / "oulad.toml"
    # Only the days and the grid differ from the shipped file (test speed); the contract is the same.
    text, n = re.subn(r"prediction_days = \[[^\]]*\]", "prediction_days = [0, 30]", shipped)
    assert n == 1
    config.write_text(
        text + "\n[training]\nparam_grid = [{num_leaves = 4, min_data_in_leaf = 100, lambda_l2 = 10.0}]\n"
        "learning_rate = 0.1\nmax_trees = 300\nearly_stopping_rounds = 20\n"
    )
    home = tmp_path / "runtime"
    common = ["--config", str(config), "--home", str(home)]
    runner = CliRunner()
    with prefect_test_harness(server_startup_timeout=120):
        trained = runner.invoke(app, ["train", str(REAL), *common, "--cohort", "2013B", "--cohort", "2013J"])
        assert trained.exit_code == 0, trained.output
        scored = runner.invoke(app, ["score", str(REAL), *common, "--cohort", "2014B"])
        assert scored.exit_code == 0, scored.output
        reported = runner.invoke(app, ["report", str(REAL), *common, "--cohort", "2014B"])
        assert reported.exit_code == 0, reported.output
        # the results of every registrant, from the same raw folder; each matched per day or named by line
        # (on no list: 809 left before day 0, 4 registered after day 30)
        recorded = runner.invoke(app, ["outcomes", str(REAL), *common, "--cohort", "2014B"])
        assert recorded.exit_code == 0, recorded.output
    assert recorded.output.startswith(
        "\n2014B: 7804 outcomes recorded (4446 at risk: Fail, Withdrawn)\n"
        "  matched to scored students: 6955 at day 0, 6506 at day 30 (every scored student)\n"
        "  813 not matched to any scored student (left before the first prediction point or registered after the "
        "last one, or an id no scored intake had): studentInfo.csv lines 4402, 4403, 4410, 4412, 4417 and 808 more; "
        "recorded, but not used in performance figures\n"
    ), recorded.output

    # the module never seen in training is counted, and scored as the modules it saw, in their shares
    assert "CCC" in scored.output
    assert "scored as the average over the categories seen in training" in scored.output
    settings = Settings(home=home)
    for day, n_students in [(0, 6955), (30, 6506)]:
        with store.opened(settings.resolved_store_url) as engine:
            rows = store.read_scores(engine, cohort="2014B", point=f"day{day}")
        assert len(rows) == n_students and rows["student_id"].is_unique
        (version,) = [p for p in (home / "reports" / "2014B" / f"day{day}").iterdir()]
        drift = json.loads((version / "intake_drift.json").read_text())
        # day 0: nothing due yet, and no two weeks of clicks to compare with earlier ones (activity_trend)
        assert drift["not_compared"] == (["weighted_score_pct_peers", "activity_trend"] if day == 0 else [])
        assert {"fairness", "generalization"} <= {p.stem for p in version.glob("*.html")}
    assert (home / "reports" / "index.html").exists()
