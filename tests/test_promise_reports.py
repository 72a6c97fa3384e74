"""The estimate and the promise wired through the product: stated at the top of the intake report on
the day of scoring, kept from before outcomes, set beside the truth by the outcomes report, listed in
the index, answered by GET /v1/model.

Each variant is run in the order of a real year: score, intake report, then outcomes recorded and the
outcomes report. In "shift" the intake report is also rebuilt once the outcomes are known (it must not
overwrite what was promised); "mechanism" skips that rebuild, which no test of it reads (an Evidently
run saved)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from risk_model.config import Settings
from risk_model.demo import make_demo

VARIANTS = {
    "shift": {"drift": True, "mechanism_shift": 0.0},  # other students, same mechanism: the estimate holds
    "mechanism": {"drift": False, "mechanism_shift": 1.0},  # same students, what leads to failing changed
}


@pytest.fixture(scope="module")
def promised(tmp_path_factory, demo_config, small_demo, trained_home):
    from reports import build
    from risk_model import jobs
    from risk_model.schema import validate

    c = demo_config.dataset
    out = {}
    for name, kw in VARIANTS.items():
        d = make_demo(n_per_cohort=800, n_past=4, seed=1, **kw)
        assert d.history.equals(small_demo.history)
        settings = Settings(home=tmp_path_factory.mktemp(f"promise-{name}") / "runtime")
        shutil.copytree(trained_home["settings"].home, settings.home)
        intake = validate(d.intake, c, stage="score", source="intake")
        jobs.score_and_store(settings, demo_config, intake, factors=False, partial="replace")
        before = build.intake_report(settings, demo_config, intake)
        jobs.record_outcomes(settings, demo_config, validate(d.outcomes, c, stage="outcomes", source="outcomes"))
        after = build.intake_report(settings, demo_config, intake) if name == "shift" else None  # outcomes known
        cohort = str(intake[c.cohort_column].iloc[0])
        outcomes = build.outcomes_report(settings, demo_config, cohort)
        out[name] = {
            "settings": settings,
            "before": before,
            "after": after,
            "outcomes": outcomes,
            "index": build.rebuild_index(settings),
            "cohort": cohort,
        }
    return out


def _true_auc(v: dict) -> float:
    return v["outcomes"]["real"]["roc_auc"]["value"]


def test_the_past_cohort_drift_is_kept_with_the_model_version_and_reused(promised):
    """The intake report keeps its model version's drift between past cohorts under the runtime folder; the
    rebuild once outcomes are known states the same figures (read there, `usual_drift_kept`)."""
    v = promised["shift"]
    kept = list((v["settings"].home / "cache" / "usual_drift").rglob("*.json"))
    assert len(kept) == 1 and v["before"]["usual_drift"]
    assert json.loads(kept[0].read_text())["usual_drift"] == v["before"]["usual_drift"] == v["after"]["usual_drift"]


def test_intake_report_states_the_estimate_and_the_promise_at_the_top(promised):
    v = promised["shift"]
    r = v["before"]
    assert not r["outcomes_known"] and r["expected"]["n"] == 800
    assert r["promise"]["status"] in ("holds", "widened")
    assert r["promise"]["estimate"] == pytest.approx(r["expected"]["roc_auc"])
    page = Path(r["html"]).read_text()
    top = page[: page.index("<main")]  # the verdict section, before the evidence
    assert 'data-testid="promise"' in top and f"ROC AUC {r['expected']['roc_auc']:.2f}" in top
    assert r["promise"]["text"].split(" (")[0] in top


def test_estimate_within_002_of_the_true_auc_under_covariate_shift_only(promised):
    v = promised["shift"]
    est = v["before"]["expected"]["roc_auc"]
    assert abs(est - _true_auc(v)) <= 0.02, (est, _true_auc(v))
    assert v["outcomes"]["n_students"] == 800


def test_outcomes_report_reads_the_promise_made_before_outcomes(promised):
    v = promised["shift"]
    assert v["after"]["outcomes_known"]
    kept = json.loads(
        (v["settings"].reports_dir / v["cohort"] / "default")
        .glob("*/before-outcomes/intake_drift.json")
        .__next__()
        .read_text()
    )
    b = v["outcomes"]["before_outcomes"]
    assert b["before_outcomes"] and "made before the outcomes were recorded" in b["source"]
    assert b["promise"] == kept["promise"] and b["created_at"] == kept["created_at"]


def test_outcomes_report_says_the_truth_fell_inside_the_promise(promised):
    v = promised["shift"]
    r, auc = v["outcomes"], _true_auc(promised["shift"])
    p, est = r["before_outcomes"]["promise"], r["before_outcomes"]["expected"]["roc_auc"]
    assert r["promise_check"]["inside"] is True and not r["promise_check"]["estimate_missed"]
    assert (
        f"The truth fell inside the promise: AUC {auc:.2f} within the promised {p['low']:.2f}-{p['high']:.2f}."
        in r["verdict"]
    )
    gap = abs(round(auc, 2) - round(est, 2))
    assert f"The estimate made before outcomes ({est:.2f}) was {gap:.2f} from the truth, within 0.03." in r["verdict"]
    page = Path(r["html"]).read_text()
    assert "Estimate, promise and truth" in page and 'data-testid="promise-text"' in page


def test_outcomes_report_says_the_estimate_missed_a_changed_mechanism_and_by_how_much(promised):
    r = promised["mechanism"]["outcomes"]
    auc, est = _true_auc(promised["mechanism"]), r["before_outcomes"]["expected"]["roc_auc"]
    missed = round(est, 2) - round(auc, 2)
    assert missed > 0.03 and r["promise_check"]["estimate_missed"]
    assert (
        f"The estimate missed by {missed:.2f}: the mechanism changed, which no estimate made before outcomes can "
        f"see (estimated {est:.2f} before outcomes, real {auc:.2f})." in r["verdict"]
    )
    assert r["promise_check"]["inside"] is False and r["warning"]
    assert "The truth fell outside the promise" in r["verdict"]


def test_verdict_words_agree_with_the_printed_numbers(promised):
    from risk_model.promise import Promise

    for v in promised.values():
        r = v["outcomes"]
        p, auc = r["before_outcomes"]["promise"], _true_auc(v)
        inside = round(p["low"], 2) <= round(auc, 2) <= round(p["high"], 2)
        assert Promise(**p).contains(auc) == inside == r["promise_check"]["inside"]
        assert ("inside the promise" in r["verdict"]) == inside


def test_index_shows_the_expected_numbers_and_the_promise_per_cohort_and_point(promised):
    v = promised["shift"]
    promise = v["before"]["promise"]
    page = (v["settings"].reports_dir / "index.html").read_text()
    assert 'data-testid="expectation"' in page and promise["text"].split(" (")[0] in page
    kept = [e for e in v["index"]["reports"] if e["report"] == "intake_drift" and e["before_outcomes"]]
    assert len(kept) == 1 and kept[0]["promise"] == promise and kept[0]["expected"] == v["before"]["expected"]


def test_report_flow_publishes_the_promise_as_a_markdown_artifact(promised, monkeypatch):
    from flows import pipeline

    made = []
    monkeypatch.setattr(pipeline, "create_markdown_artifact", lambda **kw: made.append(kw))
    r = promised["shift"]["before"]
    pipeline._publish_promises([r, promised["shift"]["outcomes"]])
    [art] = made
    assert art["key"] == "promise" and r["promise"]["text"] in art["markdown"]
    assert (
        f"ROC AUC {r['expected']['roc_auc']:.2f}" in art["markdown"]
        and f"**{r['promise']['status']}**" in art["markdown"]
    )


def test_training_keeps_the_by_cohort_metrics_each_backtest_model_promised_from(trained_home, demo_config):
    from risk_model.registry import Registry

    md = Registry(trained_home["settings"].registry_dir).load(contract=demo_config.dataset).metadata
    by = md["metrics"]["promised_by_cohort"]
    assert set(by) == {c for c in md["metrics"]["backtest"]["lightgbm"] if c != "all"}
    for cohort, folds in by.items():  # each backtest model saw only the cohorts before its test cohort
        assert all(c < cohort for c in folds if c != "all")


def test_bench_promise_table_on_backtest_like_predictions(demo_config):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from promise_table import earlier_metrics, promise_line, promise_row

    metrics = {
        "backtest": {
            "lightgbm": {
                "2020": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.80},
                "2021": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.84},
                "all": {"n": 4000, "base_rate": 0.3, "roc_auc": 0.82},
            }
        },
        "promised_by_cohort": {
            "2021": {
                "2019": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.81},
                "2020": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.83},
            }
        },
    }
    earlier = earlier_metrics(metrics, "2021")
    assert list(earlier["backtest"]["lightgbm"]) == ["2020"] and set(earlier["cv"]["lightgbm"]) == {"2019", "2020"}
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 4000)
    p = 1 / (1 + np.exp(-(1.5 * x - 1.0)))
    y = (rng.random(len(p)) < p).astype(int)  # probabilities right: estimate near the truth, inside the promise
    row = promise_row("2021", y, p, earlier, 10)
    assert row["inside"] and row["near"] and row["status"] == "holds" and row["ece"] < 0.05
    assert row["low"] <= row["estimate"] <= row["high"]
    assert promise_line("2021", y, p, earlier, 10).split()[:2] == ["2021", f"{row['estimate']:.2f}"]


@pytest.mark.browser
def test_pages_with_the_promise_open_cleanly_in_a_browser(promised):
    from test_browser import Browser, chromium_or_fail

    v = promised["mechanism"]
    with Browser(chromium_or_fail()) as browser:
        for r in (v["before"], v["outcomes"]):
            got = browser.open(Path(r["html"]), settle=1.0)
            assert got.problems() == [] and got.verdict == r["verdict"]
        index = browser.open(v["settings"].reports_dir / "index.html", settle=0.5)
        assert index.problems() == [] and index.verdict == v["index"]["verdict"]
