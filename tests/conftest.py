"""Shared fixtures: small generated cohorts, a fast training config, isolated stores."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from risk_model.config import Config, Settings, TrainingConfig, load_config
from risk_model.demo import DemoData, make_demo

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("STUDENT_RISK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def fast(config: Config) -> Config:
    """The demo settings with a two-point grid and fewer trees: same method, test speed."""
    training = TrainingConfig(
        **{
            **config.training.model_dump(),
            "param_grid": [
                {"num_leaves": 4, "min_data_in_leaf": 40, "lambda_l2": 5.0},
                {"num_leaves": 15, "min_data_in_leaf": 20, "lambda_l2": 1.0},
            ],
            "max_trees": 300,
            "early_stopping_rounds": 20,
            "learning_rate": 0.1,
            "reference_sample": 2000,
        }
    )
    return config.model_copy(update={"training": training})


# One grid point, at most 40 trees, single-threaded LightGBM: for models whose quality no assertion reads
# (the API's champion, hostile names through every report, which columns a prediction point uses).
TINY = [{"num_leaves": 4, "min_data_in_leaf": 20, "lambda_l2": 5.0, "num_threads": 1}]


def tiny(config: Config, **training) -> Config:
    """`fast(config)` with the one-point grid and at most 40 trees: the same procedure (cohort CV,
    backtest, baselines, calibration) at about two thirds of the cost."""
    config = fast(config)
    t = TrainingConfig(**{**config.training.model_dump(), "param_grid": TINY, "max_trees": 40, **training})
    return config.model_copy(update={"training": t})


@pytest.fixture(scope="session")
def demo_config() -> Config:
    return fast(load_config(REPO / "risk_model" / "examples" / "demo.toml"))


@pytest.fixture(scope="session")
def small_demo() -> DemoData:
    """Four past cohorts of 800 students and a drifted intake."""
    return make_demo(n_per_cohort=800, n_past=4, seed=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "runtime")


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory, demo_config, small_demo):
    """A runtime folder with a champion trained on `small_demo` and its intake scored (SQLite).

    Session-scoped and shared: tests must not write into it (copy it first)."""
    from risk_model import jobs
    from risk_model.schema import validate

    settings = Settings(home=tmp_path_factory.mktemp("trained") / "runtime")
    c = demo_config.dataset
    history = validate(small_demo.history, c, stage="train", source="history")
    results, real_train = [], jobs.train  # the TrainResult behind the version, for tests of the registry itself
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jobs, "train", lambda *a, **kw: results.append(real_train(*a, **kw)) or results[-1])
        train = jobs.train_and_register(settings, demo_config, history)
    intake = validate(small_demo.intake, c, stage="score", source="intake")
    scored = jobs.score_and_store(settings, demo_config, intake)
    return {"settings": settings, "train": train, "result": results[0], "score": scored, "intake": intake}


# The API's champion: trained once per session (a test module that imports `world` from another
# would get its own copy of a session fixture, so it lives here) on a small demo with `tiny` training.


@dataclass
class World:
    config: Config
    registry_dir: Path
    scores: pd.DataFrame
    summary: dict
    intake: pd.DataFrame  # raw, as a client would send it
    outcomes: pd.DataFrame  # cohort, student_id, outcome, at_risk


@pytest.fixture(scope="session")
def world(tmp_path_factory, demo_config) -> World:
    from risk_model import jobs
    from risk_model.registry import Registry
    from risk_model.schema import at_risk, validate
    from risk_model.score import score

    config = tiny(demo_config, reference_sample=200)
    d = make_demo(n_per_cohort=200, n_past=3, seed=3)
    settings = Settings(home=tmp_path_factory.mktemp("api") / "runtime")
    c = config.dataset
    jobs.train_and_register(
        settings, config, validate(d.history, c, stage="train", source="history"), progress=lambda m: None
    )
    bundle = Registry(settings.registry_dir).load(contract=c)
    result = score(
        bundle, validate(d.intake, c, stage="score", source="intake"), c, config.scoring, progress=lambda m: None
    )
    out = validate(d.outcomes, c, stage="outcomes", source="outcomes")
    outcomes = pd.DataFrame(
        {
            "cohort": out[c.cohort_column],
            "student_id": out[c.id_column],
            "outcome": out[c.outcome_column],
            "at_risk": at_risk(out, c),
        }
    )
    return World(config, settings.registry_dir, result.scores, result.summary, d.intake, outcomes)


@pytest.fixture
def pg_url():
    """A fresh schema in the real PostgreSQL for one test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # pragma: no cover - CI must have PostgreSQL
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable ({exc}); start it, or set STUDENT_RISK_TEST_PG_URL")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


REPORT_VARIANTS = {
    "planted": {"drift": True, "mechanism_shift": 1.0},  # admissions drift + a changed mechanism
    "clean": {"drift": False, "mechanism_shift": 0.0},  # a new cohort like the past ones
}


@pytest.fixture(scope="session")
def built_reports(tmp_path_factory, demo_config, small_demo, trained_home):
    """Every report, built twice with the model of `trained_home`: on a new cohort with planted drift
    and a planted performance drop ("planted"), and on one with neither ("clean"). Same history and
    seed as `small_demo`, so the trained model is the one each variant would have trained."""
    import shutil

    from reports import build
    from risk_model import jobs
    from risk_model.schema import validate

    c = demo_config.dataset
    out = {}
    for name, kw in REPORT_VARIANTS.items():
        d = make_demo(n_per_cohort=800, n_past=4, seed=1, **kw)
        assert d.history.equals(small_demo.history)
        settings = Settings(home=tmp_path_factory.mktemp(f"reports-{name}") / "runtime")
        shutil.copytree(trained_home["settings"].home, settings.home)
        intake = validate(d.intake, c, stage="score", source="intake")
        jobs.score_and_store(settings, demo_config, intake, factors=False, partial="replace")  # another intake of 2023
        jobs.record_outcomes(settings, demo_config, validate(d.outcomes, c, stage="outcomes", source="outcomes"))
        cohort = str(intake[c.cohort_column].iloc[0])
        reports = {"intake_drift": build.intake_report(settings, demo_config, intake)}
        reports["outcomes"] = build.outcomes_report(settings, demo_config, cohort)
        reports["generalization"] = build.generalization_report(
            settings, demo_config, cohort, outcomes=reports["outcomes"]
        )
        reports["fairness"] = build.fairness_report(settings, demo_config, intake)
        out[name] = {
            "settings": settings,
            "reports": reports,
            "index": build.rebuild_index(settings),
            "demo": d,
            "intake": intake,
            "cohort": cohort,
        }
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the PostgreSQL (the `pg_url` fixture, or a backend parameter
    naming it) `postgres`, so `make test-unit` (-m "not postgres ...") runs without it."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        uses_pg = "pg_url" in getattr(item, "fixturenames", ()) or any(
            isinstance(v, str) and v in ("postgres", "postgresql") for v in params.values()
        )
        if uses_pg:
            item.add_marker(pytest.mark.postgres)
