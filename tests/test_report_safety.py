"""Hostile values in a user's own export must not run script in any report, earlier evidence must
survive the arrival of outcomes, and a verdict's words must agree with the numbers it prints.

The hostile strings go in as category VALUES (a feature and a sensitive column), sensitive GROUP
names, COLUMN names (a feature and a sensitive column of the contract) and a feature label, through
validate, train, score and every report. Each payload would set `window.__pwned` and log a console
error if it ran; the browser tests assert neither happened and that each page still shows its verdict.
"""

from __future__ import annotations

import html
import json
import re
from html import unescape
from pathlib import Path

import pytest

from reports.generalization import build_generalization_report
from reports.generalization import judge as generalization_judge
from reports.outcomes import judge as outcomes_judge
from reports.page import BEFORE_OUTCOMES, EVIDENTLY, csp, evidently_page, render
from risk_model.config import DatasetContract, ReportConfig, TrainingConfig

IMG = "<img src=x onerror=window.__pwned=1;console.error('PWNED1')>"
SCRIPT = "</script><script>window.__pwned=2;console.error('PWNED2')</script>"
QUOTES = "\"'</style><svg onload=window.__pwned=3>"
COLUMN = "qual</script><script>window.__pwned=4</script>"  # a feature's column name (LightGBM takes it)
SENSITIVE = "dis<img src=x onerror=window.__pwned=5>"  # a sensitive column's name
LABEL = "grades <script>window.__pwned=6</script>"  # a feature label in the settings file
HOSTILE = (IMG, SCRIPT, QUOTES, COLUMN, SENSITIVE, LABEL)


def _hostile_config(config):
    c = config.dataset
    dataset = DatasetContract(
        **{
            **c.model_dump(),
            "categorical_features": [COLUMN if f == "entry_qualification" else f for f in c.categorical_features],
            "sensitive_columns": [SENSITIVE if f == "disability" else f for f in c.sensitive_columns],
            "feature_labels": {k: v for k, v in c.feature_labels.items() if k != "entry_qualification"}
            | {"prior_gpa": LABEL},
        }
    )
    return config.model_copy(update={"dataset": dataset})


def _hostile(df):
    df = df.rename(columns={"entry_qualification": COLUMN, "disability": SENSITIVE})
    levels = sorted(df[COLUMN].unique())
    df[COLUMN] = df[COLUMN].map(dict(zip(levels, [IMG, SCRIPT, QUOTES] + levels[3:], strict=True)))
    df["gender"] = df["gender"].map({"F": IMG, "M": SCRIPT, "X": "X"})
    df[SENSITIVE] = df[SENSITIVE].map({"Y": QUOTES, "N": "N"})
    return df


def _build(settings, config, intake, cohort, with_outcomes: bool) -> dict:
    from reports import build

    out = {
        "intake_drift": build.intake_report(settings, config, intake),
        "fairness": build.fairness_report(settings, config, intake),
    }
    if with_outcomes:
        out["outcomes"] = build.outcomes_report(settings, config, cohort)
        out["generalization"] = build.generalization_report(settings, config, cohort, outcomes=out["outcomes"])
    else:
        out["generalization"] = build.generalization_report(settings, config, cohort)
    out["index"] = build.rebuild_index(settings)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, demo_config):
    """Reports on a demo export full of hostile strings: built once before the outcomes are recorded,
    then again after (so the earlier versions are kept)."""
    from risk_model import jobs
    from risk_model.config import Settings
    from risk_model.demo import make_demo
    from risk_model.schema import validate
    from tests.conftest import tiny

    config = _hostile_config(tiny(demo_config))  # the model's quality is not what these tests read
    c = config.dataset
    d = make_demo(n_per_cohort=600, n_past=3, seed=3, drift=True, mechanism_shift=1.0)
    settings = Settings(home=tmp_path_factory.mktemp("hostile") / "runtime")
    history = validate(_hostile(d.history), c, stage="train", source="history")
    jobs.train_and_register(settings, config, history)
    intake = validate(_hostile(d.intake), c, stage="score", source="intake")
    jobs.score_and_store(settings, config, intake, factors=False)
    cohort = str(intake[c.cohort_column].iloc[0])
    before = _build(settings, config, intake, cohort, with_outcomes=False)
    jobs.record_outcomes(settings, config, validate(d.outcomes, c, stage="outcomes", source="outcomes"))
    after = _build(settings, config, intake, cohort, with_outcomes=True)
    return {
        "settings": settings,
        "config": config,
        "intake": intake,
        "cohort": cohort,
        "before": before,
        "after": after,
    }


def _pages(reports_dir: Path) -> list[Path]:
    return sorted(reports_dir.rglob("*.html"))


# ---------------------------------------------------------------------------------------------- escaping


def test_hostile_values_reach_the_pages_escaped(hostile):
    reports_dir = hostile["settings"].reports_dir
    fairness = (Path(hostile["after"]["fairness"]["html"])).read_text()
    assert "&lt;img src=x onerror=window.__pwned=1;console.error(&#x27;PWNED1&#x27;)&gt;" in fairness  # a group
    label = hostile["config"].dataset.label(SENSITIVE)
    assert "&lt;img" in html.escape(label) and html.escape(label) in fairness  # a sensitive column's name
    intake = Path(hostile["after"]["intake_drift"]["html"]).read_text()
    assert "qual&lt;/script&gt;&lt;script&gt;window.__pwned=4&lt;/script&gt;" in intake  # a feature's name
    for page in _pages(reports_dir):
        text = page.read_text()
        for raw in HOSTILE:
            assert raw not in text, f"{page.relative_to(reports_dir)} holds {raw!r} unescaped"
    # Evidently saw the values with '<' and '>' replaced, so nothing can close its data script
    snapshot = Path(hostile["after"]["intake_drift"]["html"]).parent / EVIDENTLY / "intake_drift.snapshot.json"
    text = snapshot.read_text()
    assert "qual\\u2039/script\\u203a" in text and "</script>" not in text and "<img" not in text


def test_verdicts_name_hostile_groups_as_text(hostile):
    f = hostile["after"]["fairness"]
    assert {g["group"] for g in f["columns"]["gender"]["groups"]} >= {IMG, SCRIPT}
    assert SENSITIVE in f["columns"]
    page = Path(f["html"]).read_text()
    assert (
        f["verdict"]
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
        in page
    )


@pytest.mark.browser
def test_no_hostile_value_runs_script_in_any_page(hostile, browser):
    """Every page (our reports, Evidently's pages, the kept ones, the index): no script of a payload ran,
    no console error or CSP refusal, nothing requested from the network, the verdict shown."""
    reports_dir: Path = hostile["settings"].reports_dir
    pages = _pages(reports_dir)
    names = {p.relative_to(reports_dir).as_posix().split("/", 3)[-1] for p in pages}
    assert {
        "index.html",
        "intake_drift.html",
        "outcomes.html",
        "generalization.html",
        "fairness.html",
        f"{EVIDENTLY}/intake_drift.html",
        f"{EVIDENTLY}/outcomes.html",
        f"{BEFORE_OUTCOMES}/intake_drift.html",
        f"{BEFORE_OUTCOMES}/{EVIDENTLY}/intake_drift.html",
    } <= names, names
    failures = []
    for page in pages:
        r = browser.open(page, settle=1.5)
        where = page.relative_to(reports_dir).as_posix()
        if r.pwned is not None or "PWNED" in (r.title or ""):
            failures.append(f"{where}: a payload ran (window.__pwned={r.pwned!r}, title {r.title!r})")
        failures += [f"{where}: {p}" for p in r.problems()]
        if EVIDENTLY not in page.parts:
            data = json.loads((page.with_suffix(".json")).read_text())
            if " ".join((r.verdict or "").split()) != " ".join(data["verdict"].split()):  # as innerText shows it
                failures.append(f"{where}: verdict {r.verdict!r} differs from {data['verdict']!r}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------- the CSP itself


@pytest.mark.browser
def test_the_policy_stops_script_that_escaped_escaping(tmp_path, browser):
    """Defence in depth: were a value ever written raw, the hash-based policy would not run it."""
    allowed = "document.getElementById('v').dataset.ok='1';"
    page = tmp_path / "raw.html"
    page.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{csp([allowed])}"></head>'
        f"<body><p data-testid='verdict' id='v'>shown</p><script>{allowed}</script>"
        f"{IMG}{SCRIPT}<svg onload=window.__pwned=3></svg></body></html>"
    )
    r = browser.open(page, settle=0.5)
    assert r.verdict == "shown" and r.pwned is None
    assert any("Content Security Policy" in e for e in r.errors), r.errors  # refused, and said so


@pytest.mark.browser
def test_harness_sees_errors_inside_a_sandboxed_srcdoc_iframe(tmp_path, browser):
    """Evidently's page runs in a sandboxed srcdoc iframe: the harness must see errors from in there."""
    page = tmp_path / "frame.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p data-testid='verdict'>outer</p>"
        "<iframe sandbox='allow-scripts' srcdoc=\"<script>console.error('from the frame')</script>\"></iframe>"
        "</body></html>"
    )
    r = browser.open(page, settle=0.5)
    assert any("from the frame" in e for e in r.errors), r.errors


def test_evidently_page_with_an_unexpected_script_is_refused():
    class Fake:
        def get_html_str(self, as_iframe: bool) -> str:
            return "<html><head><script>var d = {}</script></head><body>" + "<script>1</script>" * 4 + "</body></html>"

    with pytest.raises(ValueError, match="5 scripts, expected 4"):
        evidently_page(Fake(), "t")


def test_templates_escape_and_hash_only_what_they_emit():
    html = render("index.html.j2", title=SCRIPT, verdict=IMG, warning=True, advice=QUOTES, sections=[], charts=None)
    assert SCRIPT not in html and IMG not in html and QUOTES not in html
    assert "script-src 'none'" in unescape(html)  # the index emits no script, so none may run
    assert "&lt;img src=x onerror=window.__pwned=1;console.error(&#x27;PWNED1&#x27;)&gt;" in html


def test_evidently_snapshot_reopens(hostile):
    from evidently.core.report import Snapshot

    out_dir = Path(hostile["after"]["intake_drift"]["html"]).parent
    snap = Snapshot.load(out_dir / EVIDENTLY / "intake_drift.snapshot.json")
    assert len(snap.metric_results) > 5
    assert "Drift" in snap.get_html_str(as_iframe=False)


# ---------------------------------------------------------------------------------------------- evidence kept


def test_reports_made_before_outcomes_are_kept_and_listed(hostile):
    from reports import build

    settings, config = hostile["settings"], hostile["config"]
    before, after = hostile["before"], hostile["after"]
    out_dir = Path(after["intake_drift"]["html"]).parent
    for name in ("intake_drift", "fairness", "generalization"):
        kept = json.loads((out_dir / BEFORE_OUTCOMES / f"{name}.json").read_text())
        assert kept["verdict"] == before[name]["verdict"] and kept["outcomes_known"] is False
        assert kept["created_at"] == before[name]["created_at"]
        assert (out_dir / BEFORE_OUTCOMES / f"{name}.html").exists()
        assert after[name]["outcomes_known"] is True
    assert "no real outcomes yet" in before["fairness"]["verdict"]
    assert "real outcomes" in after["fairness"]["source"]
    assert (out_dir / BEFORE_OUTCOMES / EVIDENTLY / "intake_drift.snapshot.json").exists()
    assert not (out_dir / BEFORE_OUTCOMES / "outcomes.json").exists()  # outcomes have no "before"
    index = after["index"]
    kept = [e for e in index["reports"] if e["before_outcomes"]]
    assert {e["report"] for e in kept} == {"intake_drift", "fairness", "generalization"}
    assert {e["report"] for e in index["reports"] if not e["before_outcomes"]} == {
        "intake_drift",
        "outcomes",
        "generalization",
        "fairness",
    }
    assert index["verdict"].startswith(after["outcomes"]["verdict"])  # the kept ones are history, not the verdict
    html = (settings.reports_dir / "index.html").read_text()
    for e in kept:
        assert f'href="{e["href"]}"' in html and BEFORE_OUTCOMES in e["href"]
    assert html.count("before outcomes: what was promised") == 3

    # a later rebuild replaces the current report, never the first promise
    again = build.fairness_report(settings, config, hostile["intake"])
    kept_again = json.loads((out_dir / BEFORE_OUTCOMES / "fairness.json").read_text())
    assert kept_again["created_at"] == before["fairness"]["created_at"] and again["outcomes_known"]


def test_reports_written_before_the_flag_are_judged_by_their_own_numbers(tmp_path):
    from reports.page import keep_before_outcomes, made_with_outcomes

    assert made_with_outcomes({"report": "outcomes"})
    assert made_with_outcomes({"report": "generalization", "new_cohort": {"cohort": "2023"}})
    assert not made_with_outcomes({"report": "fairness", "source": "the training cohorts (...)"})
    assert not made_with_outcomes({"report": "intake_drift"})  # cannot tell: kept rather than lost
    (tmp_path / "outcomes.json").write_text(json.dumps({"report": "outcomes", "verdict": "old"}))
    (tmp_path / "intake_drift.json").write_text(json.dumps({"report": "intake_drift", "verdict": "old"}))
    assert keep_before_outcomes(tmp_path, "outcomes", True) is None
    assert keep_before_outcomes(tmp_path, "intake_drift", True) == tmp_path / BEFORE_OUTCOMES / "intake_drift.json"
    assert json.loads((tmp_path / BEFORE_OUTCOMES / "intake_drift.json").read_text())["verdict"] == "old"


# ---------------------------------------------------------------------------------------------- rounding


NUM = r"(\d+\.\d\d)"


@pytest.mark.parametrize(
    "train_auc,val_auc",
    [(0.88, 0.80), (0.8851, 0.8049), (0.8849, 0.8051), (0.8449, 0.7650), (0.905, 0.825), (0.64999, 0.6), (0.66, 0.58)],
)
def test_generalization_words_agree_with_the_numbers_printed(tmp_path, train_auc, val_auc):
    t = TrainingConfig(overfit_gap=0.08, underfit_auc=0.65)
    from test_reports import _metadata

    r = build_generalization_report(_metadata(train_auc, val_auc), t, ReportConfig(), tmp_path, cohort="2023")
    v = r["verdict"]
    if r["status"] == "underfits":
        shown = float(re.search(rf"AUC only {NUM}", v).group(1))
        assert shown < t.underfit_auc and f"below {t.underfit_auc:.2f}" in v
        return
    gap = float(re.search(rf"a gap of {NUM}", v).group(1))
    aucs = [float(x) for x in re.findall(rf"AUC {NUM}", v)[:1] + re.findall(rf"(?:but|vs) {NUM}", v)[:1]]
    assert round(abs(aucs[0] - aucs[1]), 2) == gap  # the gap is the difference of the AUCs printed
    assert max(aucs) >= t.underfit_auc  # the training AUC, as printed, is not below the underfit line
    if r["status"] == "overfits":
        assert gap > t.overfit_gap and f"above the {t.overfit_gap:.2f} allowed" in v
    else:
        assert gap <= t.overfit_gap and r["status"] == "generalizes"


def test_generalization_judge_on_the_old_borderline_says_generalizes():
    from test_reports import _metadata

    text, word, warning, info = generalization_judge(_metadata(0.66, 0.58), TrainingConfig(), ReportConfig(), None)
    assert 0.66 - 0.58 > 0.08  # in floating point the raw gap is above the threshold ...
    assert word == "generalizes" and "a gap of 0.08 (overfitting would be above 0.08)" in text  # ... not as printed


@pytest.mark.parametrize(
    "auc,promised,hi",
    [(0.75, 0.80, 0.78), (0.7449, 0.7951, 0.77), (0.7451, 0.7949, 0.77), (0.70, 0.80, 0.7951), (0.70, 0.80, 0.82)],
)
def test_outcomes_words_agree_with_the_numbers_printed(auc, promised, hi):
    cfg = ReportConfig(performance_drop=0.05)
    verdict, meaning, warning, status = outcomes_judge(
        {"value": auc, "low": auc - 0.03, "high": hi}, promised, cfg, "2023"
    )
    shown_auc, _, shown_hi, shown_promise = (
        float(x) for x in re.search(rf"AUC {NUM} on 2023 \(95% interval {NUM}-{NUM}\) vs {NUM}", verdict).groups()
    )
    more_than = round(shown_promise - shown_auc, 2) > cfg.performance_drop
    assert (status in ("dropped", "uncertain")) is more_than, verdict
    if status == "dropped":
        assert shown_hi < shown_promise and "excludes the promise" in meaning
    if status == "uncertain":
        assert shown_hi >= shown_promise and "still includes the promise" in meaning


def test_printed_units_and_scores_set_apart_from_their_threshold():
    from reports.page import apart, printed

    assert printed(0.905, ".2f") == 91 and printed(0.4549, ".0%") == 45 and printed(-0.0001, "+.1%") == 0
    assert apart(0.1004, 0.1) == "0.1004" and apart(0.0996, 0.1) == "0.0996"  # judged apart, printed apart
    assert apart(0.2, 0.1) == "0.200" and apart(0.1, 0.1) == "0.100" and apart(0.3, None) == "0.300"


def test_fairness_gap_judged_as_printed():
    from reports.fairness import agree_with_print

    def gap(high: float, low: float, flagged: bool = True) -> dict:
        return {"high": high, "low": low, "gap": high - low, "high_group": "A", "low_group": "B", "se": 0.01} | {
            "above_threshold": high - low > 0.1,
            "flagged": flagged and high - low > 0.1,
        }

    r = {
        "gaps": {
            "tpr": gap(0.4549, 0.3548),  # raw gap 0.1001 > 0.10, printed 45% vs 35%: not above
            "fpr": gap(0.4551, 0.3449),  # printed 46% vs 34%: above, beyond chance
            "roc_auc": gap(0.8049, 0.7048, flagged=False),  # printed 0.80 vs 0.70: not above
            "calibration": gap(0.0504, -0.0001),  # printed +5.0% vs -0.0%: 5.0 points, not above 5%
        }
    }
    out = agree_with_print(r, ReportConfig(fairness_gap=0.1, calibration_gap=0.05))
    assert out["to_review"] == ["fpr"] and out["to_watch"] == []
    assert not out["gaps"]["tpr"]["above_threshold"] and not out["gaps"]["calibration"]["flagged"]


@pytest.fixture(scope="module")
def browser():
    from test_browser import Browser, chromium_or_fail

    binary = chromium_or_fail()
    with Browser(binary) as b:
        yield b
