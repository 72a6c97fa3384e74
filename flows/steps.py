"""The yearly job's steps, in order, written once.

Two runners execute them: the Prefect flows (`flows/pipeline.py`) run every step as a task,
so runs, retries and artifacts are recorded on a server; the CLI runs the same steps as plain
calls when no Prefect server is configured, so a command pays nothing for orchestration it
does not use (no temporary server, no task engine). A runner is any callable
`run(step_name, fn, *args, **kwargs) -> fn(*args, **kwargs)`.

No Prefect import here: this module must stay cheap to import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from reports import build
from risk_model import jobs
from risk_model.config import Config, Settings

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


class Runner(Protocol):
    def __call__(self, step: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...


def direct(step: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run a step as a plain call (the CLI without a Prefect server)."""
    return fn(*args, **kwargs)


def train(
    config: Config,
    settings: Settings,
    history_path: str,
    *,
    force: bool = False,
    cohorts: list[str] | None = None,
    run: Runner = direct,
    progress: Progress = log.info,
) -> list[dict]:
    """Train one model per prediction point on past cohorts; promote each if good enough."""
    out = []
    for point in config.points:
        df = run("validate", jobs.prepare, config, history_path, stage="train", point=point, cohorts=cohorts)
        out.append(
            run(
                "train-and-register",
                jobs.train_and_register,
                settings,
                config,
                df,
                point=point,
                force=force,
                progress=progress,
            )
        )
    return out


def score(
    config: Config,
    settings: Settings,
    intake_path: str,
    *,
    cohort: str | None = None,
    factors: bool = True,
    partial: Literal["refuse", "merge", "replace"] = "refuse",
    run: Runner = direct,
    progress: Progress = log.info,
) -> list[dict]:
    """Score a new intake with each point's champion and store the scores; `partial` as in
    `jobs.score_and_store` (a file lacking some of a stored cohort's students is refused by default).
    Then the alerts of each point (vs. each student's previous point), and one delivery attempt of them
    to webhook subscribers."""
    cohorts = [cohort] if cohort else None
    out = []
    for point in config.points:
        df = run("validate", jobs.prepare, config, intake_path, stage="score", point=point, cohorts=cohorts)
        scored = run(
            "score-and-store",
            jobs.score_and_store,
            settings,
            config,
            df,
            point=point,
            factors=factors,
            partial=partial,
            progress=progress,
        )
        scored["alerts"] = run("alerts", jobs.alert_and_store, settings, config, df, point=point)
        out.append(scored)
    if out:
        out[-1]["webhooks"] = run("webhooks", deliver_webhooks, settings.resolved_store_url)
    return out


def deliver_webhooks(store_url: str) -> dict:
    """One dispatcher run over the outbox (`webhooks.dispatch`; httpx is imported only when it runs)."""
    from webhooks import dispatch

    return dispatch.deliver_url(store_url)


def report(
    config: Config, settings: Settings, intake_path: str, *, cohort: str | None = None, run: Runner = direct
) -> tuple[list[dict], dict]:
    """Every report of each point (intake drift, outcomes when recorded, generalization, fairness), then
    the index. Returns the reports and the index."""
    cohorts = [cohort] if cohort else None
    out: list[dict] = []
    for point in config.points:
        at = config.for_point(point)  # the contract as known at this point
        df = run("validate", jobs.prepare, config, intake_path, stage="score", point=point, cohorts=cohorts)
        intake = run("intake-report", build.intake_report, settings, at, df, point=point)
        name = intake["cohort"]
        outcomes = None
        if run("has-outcomes", build.has_outcomes, settings, name):
            outcomes = run("outcomes-report", build.outcomes_report, settings, at, name, point=point)
        out += [intake, *([outcomes] if outcomes else [])]
        out.append(
            run(
                "generalization-report",
                build.generalization_report,
                settings,
                at,
                name,
                point=point,
                outcomes=outcomes,
            )
        )
        out.append(run("fairness-report", build.fairness_report, settings, at, df, point=point))
    return out, run("index", build.rebuild_index, settings)


def outcomes(
    config: Config,
    settings: Settings,
    outcomes_path: str,
    *,
    cohort: str | None = None,
    intake_path: str | None = None,
    run: Runner = direct,
) -> tuple[dict, list[dict], dict]:
    """Record the real outcomes of a scored cohort, then report real performance vs. the promise and
    generalization (and fairness on real outcomes, given the intake file); then the index. Returns what
    was recorded (`jobs.record_outcomes`: matched per point, unmatched rows), the reports and the index."""
    cohorts = [cohort] if cohort else None
    df = run("validate", jobs.prepare, config, outcomes_path, stage="outcomes", point=config.points[0], cohorts=cohorts)
    recorded = run("record-outcomes", jobs.record_outcomes, settings, config, df)
    out: list[dict] = []
    for c in recorded["cohorts"]:
        for point in config.points:
            at = config.for_point(point)  # the contract as known at this point
            real = run("outcomes-report", build.outcomes_report, settings, at, c, point=point)
            out += [
                real,
                run(
                    "generalization-report",
                    build.generalization_report,
                    settings,
                    at,
                    c,
                    point=point,
                    outcomes=real,
                ),
            ]
            if intake_path:
                intake = run("validate", jobs.prepare, config, intake_path, stage="score", point=point, cohorts=[c])
                out.append(run("fairness-report", build.fairness_report, settings, at, intake, point=point))
    return recorded, out, run("index", build.rebuild_index, settings)
