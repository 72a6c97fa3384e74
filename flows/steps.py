"""The yearly job's steps, in order, written once.

Two runners execute them: the Prefect flows (`flows/pipeline.py`) run every step as a task,
so runs, retries and artifacts are recorded on a server; the CLI runs the same steps as plain
calls when no Prefect server is configured, so a command pays nothing for orchestration it
does not use (no temporary server, no task engine). A runner is any callable
`run(step_name, fn, *args, **kwargs) -> fn(*args, **kwargs)`.

No Prefect import here: this module must stay cheap to import.
"""

from __future__ import annotations

import builtins
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, Literal, Protocol

from reports import build
from risk_model import jobs
from risk_model.config import Config, Settings
from risk_model.train import Fit, Map

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
    map: Map | None = None,
    fit: Fit | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Train one model per prediction point on past cohorts; promote each if good enough.

    `map`: where training's independent units run (`risk_model.train.train`); by default a pool of
    local processes (`local_map`). The flows pass Prefect tasks on Dask."""
    out = []
    with ExitStack() as stack:
        if map is None:  # one pool for every point; one LightGBM thread per unit when units run side by side
            map = stack.enter_context(local_pool())
            threads = 1 if LOCAL_WORKERS > 1 else threads
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
                    map=map,
                    fit=fit,
                    threads=threads,
                )
            )
    return out


LOCAL_WORKERS = min(2, os.cpu_count() or 1)


@contextmanager
def local_pool(workers: int = LOCAL_WORKERS) -> Iterator[Map]:
    """A `map` over a pool of `workers` local processes, started once for a whole training (spawned:
    LightGBM's OpenMP is not fork-safe). The CLI's default without a Prefect server; with one worker, the
    plain builtin map. bench/bench_scale_train.py measures one against the other."""
    if workers <= 1:
        yield builtins.map
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool.map


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
    partial: Literal["refuse", "merge", "replace"] = "refuse",
    run: Runner = direct,
) -> tuple[dict, list[dict], dict]:
    """Record the real outcomes of a scored cohort, then report real performance vs. the promise and
    generalization (and fairness on real outcomes, given the intake file); then the index. Returns what
    was recorded (`jobs.record_outcomes`: matched per point, unmatched rows), the reports and the index.
    `partial` as in `jobs.record_outcomes`: a file lacking some students whose outcomes are recorded is
    refused by default; "merge" keeps the others' outcomes, "replace" keeps only the file's."""
    cohorts = [cohort] if cohort else None
    df = run("validate", jobs.prepare, config, outcomes_path, stage="outcomes", point=config.points[0], cohorts=cohorts)
    recorded = run("record-outcomes", jobs.record_outcomes, settings, config, df, partial=partial)
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
