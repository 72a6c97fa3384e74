"""`student-risk`: the command-line edge.

Each job command (train, score, report, outcomes, demo) runs the yearly job's steps (`flows.steps`):
through the Prefect flows when PREFECT_API_URL names a server, as plain calls otherwise.

Heavy imports (Prefect, LightGBM, Evidently) happen inside commands so `--help` is instant.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from risk_model.config import Config, Settings
    from risk_model.store import Partial

app = typer.Typer(
    help="Tell which incoming students are likely to struggle, and prove each year that the model "
    "still works on students it has never seen.\n\n"
    "Start with `student-risk demo` to see the whole yearly job on built-in demo data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# exists=True: a mistyped path is refused before Prefect starts its temporary server (~20 s).
ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config", "-c", exists=True, dir_okay=False, help="Settings file (TOML): the dataset contract and thresholds."
    ),
]
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Runtime folder for models, scores and reports (env STUDENT_RISK_HOME; default ./runtime)."
    ),
]
CohortOpt = Annotated[str | None, typer.Option("--cohort", help="Only this cohort of the file (e.g. 2025 or 2014J).")]


def _env() -> None:
    """Quiet, offline Prefect (when a flow runs at all); the library's log lines in flow runs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "risk_model,reports")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # busy 2-core machines


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show each step's log (training progress, timings).")
    ] = False,
) -> None:
    """Without --verbose a command prints its result or its error and nothing else."""
    level = logging.INFO if verbose or os.environ.get("STUDENT_RISK_VERBOSE") else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _quiet_known_errors_in_prefect_logs() -> None:
    """Prefect logs a failed run's traceback; for the library's own errors, keep only the message."""
    import prefect.main  # noqa: F401  (configures Prefect's loggers; the filter goes on after)

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTracebackForKnownErrors) for f in logger.filters):
            logger.addFilter(_NoTracebackForKnownErrors())


class _NoTracebackForKnownErrors(logging.Filter):
    """Prefect logs a failed run's traceback. The library's own errors say what and how to fix in their
    message, which the CLI prints once as `Error: ...`: their log records keep the message, not the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _known_errors()):
            record.exc_info = None
            record.exc_text = None
        return True


def _orchestrated() -> bool:
    """Runs go through the Prefect flows only when PREFECT_API_URL names a server that records them."""
    return bool(os.environ.get("PREFECT_API_URL"))


def _job(flow_name: str, flow_args: tuple, direct: Callable[[], Any]) -> Any:
    """Run one job: through its Prefect flow when a server is configured (the run, its tasks and artifacts
    are recorded there), else the same steps (`flows.steps`) as plain calls: no temporary Prefect server,
    no task engine, nothing to pay for orchestration nobody watches. Known errors end in one `Error:` line."""
    _env()
    try:
        if _orchestrated():
            from flows import pipeline

            _quiet_known_errors_in_prefect_logs()
            return getattr(pipeline, f"{flow_name}_flow")(*flow_args)
        return direct()
    except _known_errors() as exc:
        _fail(exc)


def _loaded(config: Path, home: Path | None) -> tuple[Config, Settings]:
    """The settings file and the runtime settings, as the flows load them."""
    from risk_model.config import Settings, load_config

    return load_config(config), (Settings(home=home) if home else Settings())


def _home(home: Path | None) -> str | None:
    return str(home) if home else None


def _fail(exc: Exception) -> None:
    typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _known_errors() -> tuple[type[Exception], ...]:
    """The library's own errors, each with a message that names the file or store and the fix."""
    from risk_model.config import ConfigError
    from risk_model.registry import RegistryError
    from risk_model.schema import ContractError
    from risk_model.store import StoreError

    return (ContractError, ConfigError, RegistryError, StoreError, ValueError, FileNotFoundError)


def _print_training(results: list[dict]) -> None:
    for r in results:
        typer.echo(f"\n[{r['point']}] {r['headline']}")
        typer.echo(
            f"  model:    {r['model_dir']} ({'champion' if r['promoted'] else 'not promoted: ' + r['promotion']})"
        )


def _print_scoring(results: list[dict]) -> None:
    for r in results:
        typer.echo(f"\n[{r['point']}] scored {r['n_scored']} students")
        for line in r["stored"]:
            typer.echo(f"  stored:   {line}")
        for cohort, c in r.get("by_cohort", {}).items():
            t, e = c["tiers"], c["expected"]
            typer.echo(
                f"  cohort {cohort}: {c['n_students']} students, {t['high']} high, {t['medium']} medium, "
                f"{t['low']} low risk\n"
                f"    expected before outcomes (from these students' own probabilities): ROC AUC {e['roc_auc']:.2f}, "
                f"{e['recall_top_k']:.0%} of those who will struggle in the top {r.get('top_k_percent', 10):g}%, "
                f"{e['at_risk_rate']:.0%} at risk"
            )
        for line in r.get("unseen_lines", []):  # categories never seen in training: how they were scored
            typer.echo(f"  {line}")
        typer.echo(f"  scores:   {r['store']} (table `scores`)")
        for export in r["exports"]:
            typer.echo(f"  export:   {export}")


def _finish_reports(out: list[dict], strict: bool) -> None:
    """Print the reports; with --strict, exit 3 when any crossed its warning threshold."""
    _print_reports(out)
    if strict and any(r["warning"] for r in out):
        typer.secho("A report crossed its warning threshold (--strict).", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=3)


def _print_reports(results: list[dict]) -> None:
    for r in results:
        typer.echo(f"\n[{r['cohort']} {r.get('report', '')}] {r['verdict']}\n  report:   {r['html']}")
    if results:
        typer.echo(f"\nAll reports: {Path(results[0]['html']).parents[3] / 'index.html'}")


@app.command()
def demo(
    home: HomeOpt = None,
    students: Annotated[int, typer.Option(help="Students per cohort.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
) -> None:
    """Run the whole yearly job on built-in demo data: 6 past cohorts and a drifted new intake."""
    from risk_model.config import Settings
    from risk_model.demo import example_config, make_demo

    settings = Settings(home=home) if home else Settings()
    from risk_model.private import private_dir

    data_dir = private_dir(settings.home / "demo")
    d = make_demo(n_per_cohort=students, seed=seed)
    cohort = d.intake.cohort.iloc[0]
    paths = {
        "history": data_dir / "history.csv",
        "intake": data_dir / f"intake-{cohort}.csv",
        "outcomes": data_dir / f"outcomes-{cohort}.csv",
    }
    d.history.to_csv(paths["history"], index=False)
    d.intake.to_csv(paths["intake"], index=False)
    d.outcomes.to_csv(paths["outcomes"], index=False)
    assert d.activity is not None  # make_demo makes one unless asked not to
    d.activity.to_parquet(data_dir / "activity.parquet", index=False)  # read by risk_model/examples/demo_activity.toml
    typer.echo(
        f"Demo data: {len(d.history)} past students ({d.history.cohort.nunique()} cohorts), "
        f"{len(d.intake)} new students in {cohort}, in {data_dir}"
    )
    from flows import steps

    demo_config = example_config("demo")
    config_path, home_str = str(demo_config), str(settings.home)
    cfg, _ = _loaded(demo_config, settings.home)
    out = _job(
        "yearly",
        (config_path, str(paths["history"]), str(paths["intake"]), home_str),
        lambda: {
            "train": steps.train(cfg, settings, str(paths["history"])),
            "score": steps.score(cfg, settings, str(paths["intake"])),
            "report": steps.report(cfg, settings, str(paths["intake"]))[0],
        },
    )
    _print_training(out["train"])
    _print_scoring(out["score"])
    _print_reports(out["report"])
    typer.echo(f"\nA year later the real outcomes of {cohort} arrive ({paths['outcomes']}):")
    later = _job(
        "outcomes",
        (config_path, str(paths["outcomes"]), home_str, str(cohort), str(paths["intake"])),
        lambda: _outcomes_result(
            steps.outcomes(cfg, settings, str(paths["outcomes"]), cohort=str(cohort), intake_path=str(paths["intake"]))
        ),
    )
    _print_outcomes(later["recorded"])
    _print_reports(later["reports"])


@app.command()
def train(
    data: Annotated[
        Path, typer.Argument(exists=True, help="Past cohorts with outcomes: CSV/Parquet, or a raw-source folder.")
    ],
    config: ConfigOpt,
    home: HomeOpt = None,
    force: Annotated[bool, typer.Option(help="Make the new model champion even if it validates worse.")] = False,
    cohort: Annotated[
        list[str] | None, typer.Option("--cohort", help="Train only on these cohorts (repeat the option); default all.")
    ] = None,
) -> None:
    """Train a model on past cohorts, validate it on cohorts it never saw, and register it."""
    from flows import steps

    out = _job(
        "train",
        (str(config), str(data), _home(home), force, cohort or None),
        lambda: steps.train(*_loaded(config, home), str(data), force=force, cohorts=cohort or None),
    )
    _print_training(out)


@app.command()
def score(
    data: Annotated[
        Path, typer.Argument(exists=True, help="The new intake, without outcomes: CSV/Parquet, or a raw-source folder.")
    ],
    config: ConfigOpt,
    home: HomeOpt = None,
    cohort: CohortOpt = None,
    factors: Annotated[
        bool,
        typer.Option(
            help="Top contributing factors: now for the tiers of [scoring] factor_tiers, for the others when "
            "first looked up through the API. --no-factors: none, now or later."
        ),
    ] = True,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="The file has only some of a stored cohort's students: update those, keep the others, "
            "re-rank and re-tier the whole cohort.",
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Replace the cohort's stored scores with this file's students only (others deleted)."
        ),
    ] = False,
) -> None:
    """Score a new intake with the champion model and store the scores for advising tools.

    A file lacking some students of a cohort already scored is refused unless --merge or --replace."""
    if merge and replace:
        _fail(ValueError("--merge and --replace exclude each other: choose one."))
    partial: Partial = "merge" if merge else "replace" if replace else "refuse"
    from flows import steps

    out = _job(
        "score",
        (str(config), str(data), _home(home), cohort, factors, partial),
        lambda: steps.score(*_loaded(config, home), str(data), cohort=cohort, factors=factors, partial=partial),
    )
    _print_scoring(out)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The model version (a folder name under models/POINT/versions).")],
    home: HomeOpt = None,
    point: Annotated[str, typer.Option(help="Prediction point.")] = "default",
) -> None:
    """Make a saved model version champion (forced), e.g. when the champion's files are damaged.

    The version is loaded and its checksums verified first: a damaged version is refused."""
    from risk_model.config import Settings
    from risk_model.registry import Registry

    settings = Settings(home=home) if home else Settings()
    try:
        _, why = Registry(settings.registry_dir).promote(version, point=point, force=True)
    except _known_errors() as exc:
        _fail(exc)
    typer.echo(f"{version} is now champion of point {point} ({why}).")


@app.command()
def report(
    data: Annotated[Path, typer.Argument(exists=True, help="The scored intake (same file you scored).")],
    config: ConfigOpt,
    home: HomeOpt = None,
    cohort: CohortOpt = None,
    strict: Annotated[bool, typer.Option(help="Exit with code 3 when a report raises a warning.")] = False,
) -> None:
    """Write the HTML reports comparing the new intake with the training cohorts."""
    from flows import steps

    out = _job(
        "report",
        (str(config), str(data), _home(home), cohort),
        lambda: steps.report(*_loaded(config, home), str(data), cohort=cohort)[0],
    )
    _finish_reports(out, strict)


def _outcomes_result(done: tuple[dict, list[dict], dict]) -> dict:
    """`steps.outcomes`'s result shaped as the outcomes flow returns it."""
    recorded, reports, _ = done
    return {"recorded": recorded, "reports": reports}


def _print_outcomes(recorded: dict) -> None:
    """Per cohort: outcomes recorded, matched to scored students per prediction point, and unmatched rows."""
    for c in recorded["by_cohort"].values():
        typer.echo("\n" + "\n".join(c["lines"]))


# Written as one line per paragraph (not a docstring): the help keeps a docstring's line breaks, so its
# prose would break mid-sentence in a narrow terminal; these paragraphs wrap to the terminal's width.
OUTCOMES_HELP = (
    "Record the real outcomes of a scored cohort, match them to its scores, and report how the model really did "
    "vs. its promise.\n\n"
    "A plain table (CSV, Parquet or .xlsx) has one row per student with the id_column, cohort_column and "
    "outcome_column of the settings file's \\[dataset] (the demo's: student_id, cohort, outcome), e.g. after "
    "`student-risk demo`:\n\n"
    "student-risk outcomes runtime/demo/outcomes-2025.csv \\\n"
    "  -c risk_model/examples/demo.toml --cohort 2025\n\n"
    "On OULAD, pass the raw folder, not a file: the final_result of every registrant of the presentation (its "
    "studentInfo.csv) is recorded, also of students who registered after day 0:\n\n"
    "student-risk outcomes ../shared/data/oulad \\\n"
    "  -c risk_model/examples/oulad.toml --cohort 2014B\n\n"
    "Every outcome row is matched to a student scored at some prediction point, or counted as unmatched and named "
    "by its line; the output says how many matched at each point. Running it again for a cohort replaces that "
    "cohort's outcomes (nothing is duplicated). A file that lacks some students whose outcomes are already "
    "recorded is refused (nothing is written) unless you choose: --merge updates the file's students and keeps "
    "the others', --replace keeps only the file's. A cohort that was never scored is refused (nothing is written)."
)


@app.command(help=OUTCOMES_HELP)
def outcomes(
    data: Annotated[
        Path,
        typer.Argument(
            exists=True,
            help="A table of real outcomes (CSV/Parquet/.xlsx with the id, cohort and outcome columns named in the "
            "settings file), or, with OULAD settings, the raw OULAD folder.",
        ),
    ],
    config: ConfigOpt,
    home: HomeOpt = None,
    cohort: CohortOpt = None,
    intake: Annotated[
        Path | None,
        typer.Option(exists=True, help="The scored intake file: also rebuild the fairness report on real outcomes."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit with code 3 when a report raises a warning.")] = False,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="The file lacks some students whose outcomes are recorded: update the file's students, keep the "
            "others' outcomes.",
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Keep only this file's outcomes for its cohorts (the others recorded deleted)."),
    ] = False,
) -> None:
    """Record outcomes, match them to the stored scores, report real performance (help: OUTCOMES_HELP)."""
    if merge and replace:
        _fail(ValueError("--merge and --replace exclude each other: choose one."))
    partial: Partial = "merge" if merge else "replace" if replace else "refuse"
    from flows import steps

    intake_path = str(intake) if intake else None
    out = _job(
        "outcomes",
        (str(config), str(data), _home(home), cohort, intake_path, partial),
        lambda: _outcomes_result(
            steps.outcomes(*_loaded(config, home), str(data), cohort=cohort, intake_path=intake_path, partial=partial)
        ),
    )
    _print_outcomes(out["recorded"])
    _finish_reports(out["reports"], strict)


@app.command()
def init(
    data: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="An export: CSV (any delimiter), .xlsx or Parquet.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the contract; default: beside the export, .toml."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing contract file.")] = False,
) -> None:
    """Draft a commented dataset contract (TOML) from an export: roles, kinds and TODOs to decide."""
    from risk_model.onboard import draft_contract
    from risk_model.schema import ContractError
    from risk_model.sources.files import ReadError, read_export_with_dialect

    try:
        df, dialect = read_export_with_dialect(data)
    except (ReadError, ContractError) as exc:
        _fail(exc)
    stem = data.name.split(".")[0] or "contract"
    target = output or data.with_name(f"{stem}.toml")
    if target.exists() and not force:
        _fail(FileExistsError(f"{target} exists: pass --force to overwrite it, or --output another file."))
    target.write_text(draft_contract(df, data.name, dialect, target.name), encoding="utf-8")
    todos = target.read_text(encoding="utf-8").count("TODO")
    typer.echo(f"Wrote {target}: a draft contract for {len(df)} rows and {len(df.columns)} columns, {todos} TODO(s).")
    typer.echo(f"Decide each TODO, then: student-risk check {data} -c {target}")


@app.command()
def check(
    data: Annotated[Path, typer.Argument(exists=True, help="An export to check against the contract.")],
    config: ConfigOpt,
    stage: Annotated[
        str | None,
        typer.Option(
            help="train (past cohorts, with outcome), score (an intake) or outcomes; default: train when "
            "the file has the outcome column, else score."
        ),
    ] = None,
) -> None:
    """Check an export against the contract without training or writing anything: every problem at once."""
    from risk_model.config import ConfigError, load_config
    from risk_model.schema import ContractError, validate
    from risk_model.sources import load_table

    if stage not in (None, "train", "score", "outcomes"):
        _fail(ValueError(f"--stage {stage!r}: use train, score or outcomes."))
    schema_log = logging.getLogger("risk_model.schema")
    level = schema_log.level
    schema_log.setLevel(logging.ERROR)  # its notes are printed below, once, not also as log lines
    try:
        cfg = load_config(config)
        df = load_table(cfg, data, stage="score" if stage is None else stage)  # type: ignore[arg-type]
        c = cfg.dataset
        chosen = stage or ("train" if c.outcome_column in df.columns else "score")
        out = validate(df, c, stage=chosen, source=str(data))  # type: ignore[arg-type]
    except (ContractError, ConfigError) as exc:
        _fail(exc)
    finally:
        schema_log.setLevel(level)
    cohorts = c.sort_cohorts(out[c.cohort_column].unique())
    typer.echo(f"OK: {len(out)} rows, cohorts {cohorts} (checked as {chosen}).")
    for note in out.attrs.get("notes", []):
        typer.secho(f"Note: {note}", fg=typer.colors.YELLOW)


@app.command()
def deploy(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Settings file (TOML) (env STUDENT_RISK_DEPLOY_CONFIG_PATH).")
    ] = None,
    history: Annotated[
        Path | None, typer.Option(help="Past cohorts with outcomes (env STUDENT_RISK_DEPLOY_HISTORY_PATH).")
    ] = None,
    intake: Annotated[
        Path | None, typer.Option(help="The intake to score each year (env STUDENT_RISK_DEPLOY_INTAKE_PATH).")
    ] = None,
    outcomes: Annotated[
        Path | None, typer.Option(help="Real outcomes, when they arrive (env STUDENT_RISK_DEPLOY_OUTCOMES_PATH).")
    ] = None,
    cohort: CohortOpt = None,
    pool: Annotated[
        str | None, typer.Option(help="Process work pool (env STUDENT_RISK_DEPLOY_WORK_POOL, default student-risk).")
    ] = None,
    yearly_cron: Annotated[
        str | None, typer.Option(help="Yearly run, cron (env STUDENT_RISK_DEPLOY_YEARLY_CRON, default '0 6 1 9 *').")
    ] = None,
    term_cron: Annotated[
        str | None, typer.Option(help="Optional per-term scoring, cron (env STUDENT_RISK_DEPLOY_TERM_CRON).")
    ] = None,
) -> None:
    """Register the yearly job (and train, score, report) as scheduled deployments on the Prefect server
    at PREFECT_API_URL (with PREFECT_API_AUTH_STRING). Run it again after changing a setting: deployments are
    updated in place. Runs write to the worker's STUDENT_RISK_HOME; a run cannot choose another folder."""
    _env()
    from flows.settings import DeploySettings

    given = {
        "config_path": config,
        "history_path": history,
        "intake_path": intake,
        "outcomes_path": outcomes,
        "cohort": cohort,
        "work_pool": pool,
        "yearly_cron": yearly_cron,
        "term_cron": term_cron,
    }
    settings = DeploySettings.model_validate({k: v for k, v in given.items() if v is not None})
    from flows.deploy import register

    try:
        ids = register(settings)
    except _known_errors() as exc:
        _fail(exc)
    for name in ids:
        typer.echo(f"deployed  {name}")
    typer.echo(
        f"\nYearly run: cron '{settings.yearly_cron}' ({settings.timezone})"
        + (f"; per-term scoring: cron '{settings.term_cron}'" if settings.term_cron else "")
    )
    typer.echo(
        f"Start a worker:  student-risk worker --pool {settings.work_pool}\n"
        f"Run it now:      prefect deployment run 'yearly/{settings.name}'"
    )


@app.command()
def worker(
    pool: Annotated[
        str | None, typer.Option(help="Process work pool (env STUDENT_RISK_DEPLOY_WORK_POOL, default student-risk).")
    ] = None,
    home: HomeOpt = None,
    limit: Annotated[int | None, typer.Option(help="At most this many flow runs at once.")] = None,
    healthcheck: Annotated[
        bool, typer.Option(help="Serve GET /health on PREFECT_WORKER_WEBSERVER_PORT (8080).")
    ] = False,
) -> None:
    """Start a Prefect worker that runs the deployed flows (`prefect worker start --type process`)."""
    _env()
    from flows.deploy import ensure_work_pool, exec_worker
    from flows.settings import DeploySettings
    from risk_model.config import Settings

    name = pool or DeploySettings().work_pool
    try:
        ensure_work_pool(name)  # (re)locks its job template: a run cannot override the command
    except _known_errors() as exc:
        _fail(exc)
    exec_worker(name, home or Settings().home, limit, healthcheck)


keys_app = typer.Typer(help="API keys of the advising API: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _key_store(home: Path | None):
    from risk_model import store
    from risk_model.config import Settings

    settings = Settings(home=home) if home else Settings()
    url = settings.resolved_store_url
    try:
        with store.store_errors(url):
            if url.startswith("sqlite"):  # the CLI's embedded store; a server database is migrated by `db upgrade`
                store.upgrade(url)
            return store.connect(url)
    except store.StoreError as exc:
        _fail(exc)


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        str,
        typer.Option(
            help="read (stored scores, alerts), score (score new records), write (record interventions) or admin (all)."
        ),
    ],
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. case-management.")],
    home: HomeOpt = None,
) -> None:
    """Create a key. It is printed once and stored only as a hash: keep it in the tool's secrets."""
    from api import keys

    try:
        key, secret = keys.create_key(_key_store(home), name=name, scope=scope)
    except ValueError as exc:
        _fail(exc)
    typer.echo(f"Key {key.id} ({key.name}, scope {key.scope}) created. Send it as the X-API-Key header:\n{secret}")


@keys_app.command("list")
def keys_list(home: HomeOpt = None) -> None:
    """List keys (never the keys themselves)."""
    from api import keys

    for k in keys.list_keys(_key_store(home)):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.id:>4}  {k.prefix}…  {k.scope:<6} {k.name:<30} created {k.created_at:%Y-%m-%d %H:%M}  {state}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`).")], home: HomeOpt = None
) -> None:
    """Revoke a key: the API refuses it within api_key_cache_seconds (default 10 s)."""
    from api import keys

    try:
        k = keys.revoke_key(_key_store(home), key_id)
    except ValueError as exc:
        _fail(exc)
    typer.echo(f"Key {k.id} ({k.name}) revoked.")


webhooks_app = typer.Typer(
    help="Webhooks to advising tools: alerts sent signed (HMAC-SHA256) to each subscriber, caught up after downtime.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Option(help="Where to POST alert batches, e.g. https://advising.example/hooks.")],
    name: Annotated[str, typer.Option(help="Which tool it is, e.g. case-management.")],
    home: HomeOpt = None,
) -> None:
    """Add a subscriber. Its signing secret is printed once: give it to the receiving tool."""
    from risk_model import outbox

    try:
        sub, secret = outbox.add_subscriber(_key_store(home), name=name, url=url)
    except ValueError as exc:
        _fail(exc)
    typer.echo(
        f"Subscriber {sub.id} ({sub.name}) added; new alerts are sent to {sub.url}.\n"
        f"Verify X-Student-Risk-Signature (sha256=HMAC-SHA256 of the raw body) with this secret:\n{secret}"
    )


@webhooks_app.command("list")
def webhooks_list(home: HomeOpt = None) -> None:
    """List subscribers with delivered and pending batches (never their secrets)."""
    from risk_model import outbox

    engine = _key_store(home)
    states = {s["subscriber_id"]: s for s in outbox.status(engine)}
    for sub in outbox.list_subscribers(engine):
        st = states.get(sub.id, {"delivered": 0, "pending": 0, "failing": 0, "next_attempt": None})
        retry = f", next try {st['next_attempt']:%Y-%m-%d %H:%M}" if st["failing"] and st["next_attempt"] else ""
        typer.echo(
            f"{sub.id:>4}  {sub.name:<24} {sub.url}  delivered {st['delivered']}, pending {st['pending']}"
            f" ({st['failing']} failing{retry})"
        )


@webhooks_app.command("remove")
def webhooks_remove(
    subscriber_id: Annotated[int, typer.Argument(help="The subscriber's id (see `webhooks list`).")],
    home: HomeOpt = None,
) -> None:
    """Stop sending to a subscriber (its undelivered batches are dropped; its delivery log is kept)."""
    from risk_model import outbox

    try:
        sub = outbox.remove_subscriber(_key_store(home), subscriber_id)
    except ValueError as exc:
        _fail(exc)
    typer.echo(f"Subscriber {sub.id} ({sub.name}) removed.")


@webhooks_app.command("deliver")
def webhooks_deliver(
    home: HomeOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each receiver.")] = 10.0,
) -> None:
    """Run the dispatcher once: send every due batch, oldest first; failures are retried later with backoff."""
    from webhooks import dispatch

    result = dispatch.deliver(_key_store(home), timeout=timeout)
    typer.echo(f"Delivered {result['delivered']} batch(es); {result['failed']} failed and will be retried.")


db_app = typer.Typer(help="The score store's schema: migrate it (a deploy step) or show its revision.")
app.add_typer(db_app, name="db", no_args_is_help=True)


def _store_url(home: Path | None) -> str:
    from risk_model.config import Settings

    return (Settings(home=home) if home else Settings()).resolved_store_url


def _upgrade(url: str) -> None:
    from risk_model import store

    try:
        revision = store.upgrade(url)
    except store.StoreError as exc:
        _fail(exc)
    typer.echo(f"Score store at schema revision {revision} (head).")


@db_app.command("upgrade")
def db_upgrade(home: HomeOpt = None) -> None:
    """Migrate the score store (STUDENT_RISK_STORE_URL) to the newest schema, once, under a lock.
    Run it before the worker and the API start; they refuse a store that is behind."""
    _upgrade(_store_url(home))


@db_app.command("current")
def db_current(home: HomeOpt = None) -> None:
    """Show the score store's schema revision and whether it is the newest; exit 1 when behind."""
    from risk_model import store

    try:
        found, head = store.revisions(_store_url(home))
    except store.StoreError as exc:
        _fail(exc)
    typer.echo(f"{found or 'none (empty store)'} ({'head' if found == head else f'behind: head is {head}'})")
    if found != head:
        raise typer.Exit(code=1)


@app.command()
def serve(
    home: HomeOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (env STUDENT_RISK_API_HOST; default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (env STUDENT_RISK_API_PORT; default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (env STUDENT_RISK_API_WORKERS; default 1).")] = None,
) -> None:
    """Serve the advising API (scores over HTTP, OpenAPI at /docs) with uvicorn."""
    import uvicorn

    from api.settings import ApiSettings

    if home:
        os.environ["STUDENT_RISK_HOME"] = str(home)  # the worker processes read their settings from the environment
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # concurrency comes from requests; no OpenMP oversubscription
    settings = ApiSettings()
    if os.environ.get("STUDENT_RISK_API_MIGRATE", "").strip().lower() in {"1", "true", "yes"}:
        _upgrade(settings.resolved_store_url)
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers or settings.api_workers,
        log_level="info",
        access_log=False,  # request paths carry student ids; the audit table records lookups instead
    )


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
