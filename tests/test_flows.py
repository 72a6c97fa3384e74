"""The Prefect flows and the CLI end to end on small demo data, under prefect_test_harness."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.main import app
from risk_model import store
from risk_model.config import Settings
from risk_model.demo import make_demo
from risk_model.registry import Registry
from tests.conftest import REPO, fast

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def harness():
    # imported here: it costs about 2 s of CPU, paid by `make test-unit` at collection although every
    # test of this module is `slow`
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def fast_config_path(tmp_path_factory, demo_config):
    """risk_model/examples/demo.toml with the fast training grid, as a settings file."""
    import tomllib

    raw = tomllib.loads((REPO / "risk_model" / "examples" / "demo.toml").read_text())
    raw["training"].update({k: v for k, v in fast(demo_config).training.model_dump().items() if k != "param_grid"})
    path = tmp_path_factory.mktemp("cfg") / "demo.toml"
    grid = "\n".join(
        "[[training.param_grid]]\n" + "\n".join(f"{k} = {v}" for k, v in p.items())
        for p in demo_config.training.param_grid
    )
    body = (
        (REPO / "risk_model" / "examples" / "demo.toml")
        .read_text()
        .replace(
            "[training]\n",
            "[training]\n"
            + "\n".join(
                f"{k} = {json.dumps(v)}"
                for k, v in raw["training"].items()
                if k not in ("top_k_percent", "overfit_gap", "underfit_auc")
            )
            + "\n",
            1,
        )
    )
    path.write_text(body + "\n" + grid + "\n")
    return path


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    d = make_demo(n_per_cohort=700, n_past=4, seed=5)
    folder = tmp_path_factory.mktemp("data")
    d.history.to_csv(folder / "history.csv", index=False)
    d.intake.to_csv(folder / "intake.csv", index=False)
    return folder


def _count(settings: Settings, cohort: str) -> int:
    engine = store.connect(settings.resolved_store_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(store.scores).where(store.scores.c.cohort == cohort)).scalar()
    engine.dispose()
    return n


def test_yearly_flow_end_to_end_and_rerun_duplicates_nothing(tmp_path, fast_config_path, demo_files):
    from flows.pipeline import yearly_flow

    home = tmp_path / "rt"
    args = (str(fast_config_path), str(demo_files / "history.csv"), str(demo_files / "intake.csv"))
    out = yearly_flow(*args, home=str(home))
    train, scored, report = out["train"][0], out["score"][0], out["report"][0]
    assert train["promoted"] and train["training_cohorts"] == ["2019", "2020", "2021", "2022"]
    assert scored["n_students"] == 700 and sum(scored["tiers"].values()) == 700
    # the planted admissions change is what the drift report finds
    assert report["dataset_drift"] and {"entry_points", "prior_gpa"} <= set(report["drifted_features"])
    assert "Drift detected in cohort 2023" in report["verdict"]
    html = (home / "reports" / "2023" / "default" / train["version"] / "intake_drift.html").read_text()
    assert "Drift detected in cohort 2023" in html
    settings = Settings(home=home)
    assert _count(settings, "2023") == 700

    again = yearly_flow(*args, home=str(home))
    assert again["train"][0]["version"] == train["version"]  # same data, same settings: same model
    assert Registry(settings.registry_dir).versions() == [train["version"]]
    assert _count(settings, "2023") == 700


def test_train_flow_fits_on_lightgbms_dask_estimator_above_its_setting(
    tmp_path, fast_config_path, demo_files, monkeypatch
):
    """Above [training] dask_fit_above rows the flow's final fits run on LightGBM's Dask estimator, on the
    flow's own cluster: Prefect's Dask runner does not make its client the default, so it must be found."""
    from flows.pipeline import train_flow
    from risk_model.dask_fit import DaskFit

    fits = []
    real = DaskFit.__call__

    def spy(self, params, X, y, n_trees):
        client = self.client()
        fits.append((len(X), len(client.scheduler_info()["workers"])))
        return real(self, params, X, y, n_trees)

    monkeypatch.setattr(DaskFit, "__call__", spy)
    config = tmp_path / "demo.toml"
    config.write_text(re.sub(r"(?m)^dask_fit_above = .*$", "dask_fit_above = 1500", fast_config_path.read_text()))
    out = train_flow(str(config), str(demo_files / "history.csv"), home=str(tmp_path / "rt"), dask_workers=2)
    assert out[0]["promoted"]
    # four past cohorts of 700: the champion (2,800 rows) and the last backtest year (2,100) go over 1,500
    assert sorted(fits) == [(2100, 2), (2800, 2)]


def test_no_drift_planted_no_drift_reported(tmp_path, fast_config_path):
    from flows.pipeline import yearly_flow

    d = make_demo(n_per_cohort=700, n_past=4, seed=6, drift=False)
    d.history.to_csv(tmp_path / "h.csv", index=False)
    d.intake.to_csv(tmp_path / "i.csv", index=False)
    out = yearly_flow(
        str(fast_config_path), str(tmp_path / "h.csv"), str(tmp_path / "i.csv"), home=str(tmp_path / "rt")
    )
    report = out["report"][0]
    assert not report["dataset_drift"], report["drifted_features"]
    assert report["verdict"].startswith("No drift")


def test_cli_bad_intake_fails_clearly_and_writes_nothing(tmp_path, fast_config_path, demo_files):
    runner = CliRunner()
    home = tmp_path / "rt"
    ok = runner.invoke(
        app, ["train", str(demo_files / "history.csv"), "-c", str(fast_config_path), "--home", str(home)]
    )
    assert ok.exit_code == 0, ok.output
    assert "The model generalizes" in ok.output, ok.output
    bad = tmp_path / "bad.csv"
    intake = make_demo(n_per_cohort=50, n_past=1, seed=9).intake
    intake = intake.astype({"vle_hours_per_week": object})
    intake.loc[3, "vle_hours_per_week"] = "lots"
    intake.to_csv(bad, index=False)
    res = runner.invoke(app, ["score", str(bad), "-c", str(fast_config_path), "--home", str(home)])
    assert res.exit_code == 2
    assert "'vle_hours_per_week' must be numeric" in res.output and "line 5" in res.output and str(bad) in res.output
    assert not (home / "scores.db").exists() or _count(Settings(home=home), "2020") == 0
    assert not (home / "exports").exists()


def test_help_is_plain():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("demo", "train", "score", "report"):
        assert cmd in res.output


def test_cli_refuses_a_mistyped_path_before_starting_anything(tmp_path, fast_config_path, demo_files):
    home = tmp_path / "rt"
    runner = CliRunner()
    for args in (
        ["train", str(tmp_path / "histroy.csv"), "-c", str(fast_config_path)],
        ["score", str(demo_files / "intake.csv"), "-c", str(tmp_path / "setings.toml")],
        ["outcomes", str(demo_files / "intake.csv"), "-c", str(fast_config_path), "--intake", str(tmp_path / "x.csv")],
    ):
        res = runner.invoke(app, [*args, "--home", str(home)], env={"COLUMNS": "400"})  # no wrapped lines
        assert res.exit_code == 2, res.output
        missing = next(a for a in args if "histroy" in a or "setings" in a or a.endswith("x.csv"))
        assert "does not exist" in res.output and Path(missing).name in res.output
    assert not home.exists()  # nothing started, nothing written
