"""The yearly job as Prefect 3 flows: train, score, report, and yearly (all three).

They run with no Prefect server configured (Prefect starts a temporary local one) and
against a server when PREFECT_API_URL is set. Headline metrics and report paths are
published as artifacts.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows import steps
from flows.settings import run_settings
from risk_model import store
from risk_model.config import Config, Settings, load_config
from risk_model.store import Partial


def _setup(config_path: str, home: str | None) -> tuple[Config, Settings]:
    settings = run_settings(home)
    return load_config(config_path), settings


def _log():
    return get_run_logger().info


class ThresholdCrossed(RuntimeError):
    """A report crossed its warning threshold (e.g. intake drift): the deployed run ends Failed, visibly."""


def _retry_on_io(task, task_run, state) -> bool:
    """Retry a transient I/O error (network share, busy disk); a bad file or path fails at once."""
    try:
        state.result()
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


def _retry_transient(task, task_run, state) -> bool:
    """Retry when the store dropped the connection or a transient I/O error hit; never a refusal
    (a partial cohort, an unscored cohort, a damaged model), which fails the same way again."""
    try:
        state.result()
    except store.StoreError as exc:
        return exc.transient
    except Exception:
        return _retry_on_io(task, task_run, state)
    return False


def _step_task(name: str, **options):
    """A task that runs one step of `flows.steps` (the library call it is given)."""

    @task(name=name, cache_policy=NO_CACHE, **options)
    def step(fn, *args, **kwargs):
        return fn(*args, **kwargs)

    return step


# Retries only on I/O: reading input (not a missing file) and writing the store or a report file.
_IO = {"retries": 2, "retry_delay_seconds": 10, "retry_condition_fn": _retry_on_io}
_STORE = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _retry_transient}
TASKS = {
    "validate": _step_task("validate", **_IO),
    "train-and-register": _step_task("train-and-register"),
    "score-and-store": _step_task("score-and-store", **_STORE),
    "alerts": _step_task("alerts", **_STORE),
    "webhooks": _step_task("webhooks"),
    "intake-report": _step_task("intake-report", **_IO),
    "record-outcomes": _step_task("record-outcomes", **_STORE),
    "has-outcomes": _step_task("has-outcomes"),
    "outcomes-report": _step_task("outcomes-report"),
    "generalization-report": _step_task("generalization-report"),
    "fairness-report": _step_task("fairness-report"),
    "index": _step_task("index"),
}
validate_task = TASKS["validate"]


def as_tasks(step: str, fn, /, *args, **kwargs):
    """The runner of `flows.steps` inside a flow: each step is a Prefect task."""
    return TASKS[step](fn, *args, **kwargs)


def _with_warning(out: list[dict], data=None):
    """The flow's end state: "Warning" (type Completed) when a report crossed its threshold.

    A named state shows as "Warning" on the run in the UI and emits the event
    `prefect.flow-run.Warning`, which an automation can match to notify someone; the run is
    not Failed because the reports were written. Callers still receive `out`."""
    from prefect.states import Completed

    crossed = [r for r in out if r["warning"]]
    if not crossed:
        return out if data is None else data
    message = f"{len(crossed)} report(s) crossed a warning threshold: " + " | ".join(r["verdict"] for r in crossed)
    return Completed(name="Warning", message=message[:2000], data=out if data is None else data)


def _publish_reports(out: list[dict], index: dict) -> None:
    create_markdown_artifact(
        key="reports",
        markdown=f"**{index['verdict']}**\n\n"
        + "\n".join(
            f"- {'⚠️ ' if r['warning'] else ''}[{r['cohort']} {r['model_version']} {r['report']}] {r['verdict']}  \n  `{r['html']}`"
            for r in out
        ),
    )
    for r in out:
        if r["warning"]:
            get_run_logger().warning(r["verdict"])


def _publish_promises(out: list[dict]) -> None:
    """What each intake is expected to do before its outcomes, and the promise, as the intake reports say."""
    lines = []
    for r in out:
        if r["report"] != "intake_drift" or not r.get("promise"):
            continue
        e, p = r["expected"], r["promise"]
        lines.append(
            f"**Cohort {r['cohort']}** (model {r['model_version']}): expected before outcomes ROC AUC "
            f"{e['roc_auc']:.2f}, recall in the top {r['k_percent']:g}% {e['recall_top_k']:.2f}, at-risk rate "
            f"{e['at_risk_rate']:.0%}. Promise **{p['status']}**: {p['text']}"
        )
    if lines:
        create_markdown_artifact(key="promise", markdown="\n\n".join(lines), description="The promise per intake")


def _publish_training(summaries: list[dict]) -> None:
    rows = [
        {
            k: s[k]
            for k in (
                "point",
                "version",
                "verdict",
                "train_auc",
                "cv_auc",
                "validation_auc",
                "logistic_auc",
                "promoted",
            )
        }
        for s in summaries
    ]
    create_table_artifact(
        key="training-metrics", table=rows, description="Train vs. validation AUC per prediction point"
    )
    create_markdown_artifact(
        key="training-verdict",
        markdown="\n\n".join(f"**{s['point']}** ({s['version']}): {s['headline']}" for s in summaries),
    )


@flow(name="train")
def train_flow(
    config_path: str, history_path: str, home: str | None = None, force: bool = False, cohorts: list[str] | None = None
) -> list[dict]:
    """Train one model per prediction point on past cohorts (all in the file, or `cohorts`);
    promote each if good enough."""
    config, settings = _setup(config_path, home)
    out = steps.train(config, settings, history_path, force=force, cohorts=cohorts, run=as_tasks, progress=_log())
    _publish_training(out)
    return out


@flow(name="score")
def score_flow(
    config_path: str,
    intake_path: str,
    home: str | None = None,
    cohort: str | None = None,
    factors: bool = True,
    partial: Partial = "refuse",
) -> list[dict]:
    """Score a new intake with each point's champion and store the scores. When the store holds students
    of the cohort the file lacks, `partial` says what to do: "refuse" (default), "merge" or "replace"."""
    config, settings = _setup(config_path, home)
    out = steps.score(
        config, settings, intake_path, cohort=cohort, factors=factors, partial=partial, run=as_tasks, progress=_log()
    )
    create_table_artifact(
        key="scoring-summary",
        table=[
            {
                "point": s["point"],
                "cohort": cohort,
                "students": c["n_students"],
                **c["tiers"],
                "expected_roc_auc": round(c["expected"]["roc_auc"], 3),
                "expected_recall_top_k": round(c["expected"]["recall_top_k"], 3),
                "expected_at_risk_rate": round(c["expected"]["at_risk_rate"], 3),
                "unseen_categories": s["n_unseen_category_values"],
                "stored": "; ".join(s["stored"]),
            }
            for s in out
            for cohort, c in s["by_cohort"].items()
        ],
        description="Per cohort and point: tiers, and the performance expected before outcomes (CBPE)",
    )
    return out


@flow(name="report")
def report_flow(
    config_path: str, intake_path: str, home: str | None = None, cohort: str | None = None, fail_on_drift: bool = False
) -> list[dict]:
    """Build the reports for each point: intake drift, generalization, fairness, and outcomes when the
    cohort's real outcomes are recorded; then the index. The run ends in a "Warning" state when a report
    crosses its threshold (with `fail_on_drift`, as deployed: Failed once the reports are written)."""
    config, settings = _setup(config_path, home)
    out, index = steps.report(config, settings, intake_path, cohort=cohort, run=as_tasks)
    _publish_reports(out, index)
    _publish_promises(out)
    crossed = [r for r in out if r["warning"]]
    if fail_on_drift and crossed:
        raise ThresholdCrossed(
            "; ".join(f"{r['cohort']}: {r['verdict']} (report: {r['html']})" for r in crossed)
            + ". Scores are stored; review the report before advisors act on them."
        )
    return _with_warning(out)


@flow(name="outcomes")
def outcomes_flow(
    config_path: str,
    outcomes_path: str,
    home: str | None = None,
    cohort: str | None = None,
    intake_path: str | None = None,
) -> dict:
    """Record the real outcomes of a scored cohort, then report real performance vs. the promise and
    generalization (and fairness on real outcomes, given the intake file); rebuild the index. Returns
    {"recorded": matched and unmatched outcomes per cohort and point, "reports": [...]}. Ends in a
    "Warning" state when performance dropped."""
    config, settings = _setup(config_path, home)
    recorded, out, index = steps.outcomes(
        config, settings, outcomes_path, cohort=cohort, intake_path=intake_path, run=as_tasks
    )
    create_markdown_artifact(
        key="outcomes",
        markdown="\n\n".join(
            "\n".join(f"- {line.strip()}" if i else f"**{line}**" for i, line in enumerate(c["lines"]))
            for c in recorded["by_cohort"].values()
        ),
    )
    _publish_reports(out, index)
    return _with_warning(out, data={"recorded": recorded, "reports": out})


@flow(name="yearly")
def yearly_flow(
    config_path: str,
    history_path: str,
    intake_path: str,
    home: str | None = None,
    cohort: str | None = None,
    force: bool = False,
    fail_on_drift: bool = False,
    train_cohorts: list[str] | None = None,
) -> dict:
    """The whole yearly job: train on past cohorts (all in `history_path`, or `train_cohorts`),
    score the new intake, write the reports."""
    out = {
        "train": train_flow(config_path, history_path, home, force, train_cohorts),
        "score": score_flow(config_path, intake_path, home, cohort),
        "report": report_flow(config_path, intake_path, home, cohort, fail_on_drift),
    }
    return _with_warning(out["report"], data=out)
