"""`student-risk`: the command-line edge. Each command runs one Prefect flow.

Heavy imports (Prefect, LightGBM, Evidently) happen inside commands so `--help` is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Tell which incoming students are likely to struggle, and prove each year that the model "
    "still works on students it has never seen.\n\n"
    "Start with `student-risk demo` to see the whole yearly job on built-in demo data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "examples" / "demo.toml"

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Settings file (TOML): the dataset contract and thresholds.")]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Runtime folder for models, scores and reports [env STUDENT_RISK_HOME, default ./runtime]."),
]
CohortOpt = Annotated[str | None, typer.Option("--cohort", help="Only this cohort of the file (e.g. 2025 or 2014J).")]


def _env() -> None:
    """Quiet, offline Prefect; the library's log lines shown in flow runs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "risk_model,reports")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _home(home: Path | None) -> str | None:
    return str(home) if home else None


def _fail(exc: Exception) -> None:
    typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _known_errors() -> tuple[type[Exception], ...]:
    from risk_model.config import ConfigError
    from risk_model.registry import RegistryError
    from risk_model.schema import ContractError

    return (ContractError, ConfigError, RegistryError, ValueError, FileNotFoundError)


def _print_training(results: list[dict]) -> None:
    for r in results:
        typer.echo(f"\n[{r['point']}] {r['headline']}")
        typer.echo(f"  model:    {r['model_dir']} ({'champion' if r['promoted'] else 'not promoted: ' + r['promotion']})")


def _print_scoring(results: list[dict]) -> None:
    for r in results:
        t = r["tiers"]
        typer.echo(
            f"\n[{r['point']}] scored {r['n_students']} students of {', '.join(r['cohorts'])}: "
            f"{t['high']} high, {t['medium']} medium, {t['low']} low risk"
        )
        if r["n_unseen_category_values"]:
            typer.echo(f"  unseen categories (scored as unknown): {json.dumps(r['unseen_categories'])}")
        typer.echo(f"  scores:   {r['store']} (table `scores`)\n  export:   {r['export']}")


def _print_reports(results: list[dict]) -> None:
    for r in results:
        typer.echo(f"\n[{r['cohort']}] {r['verdict']}\n  report:   {r['html']}")


@app.command()
def demo(
    home: HomeOpt = None,
    students: Annotated[int, typer.Option(help="Students per cohort.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
) -> None:
    """Run the whole yearly job on built-in demo data: 6 past cohorts and a drifted new intake."""
    _env()
    from risk_model.config import Settings
    from risk_model.demo import make_demo

    settings = Settings(home=home) if home else Settings()
    data_dir = settings.home / "demo"
    data_dir.mkdir(parents=True, exist_ok=True)
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
    typer.echo(f"Demo data: {len(d.history)} past students ({d.history.cohort.nunique()} cohorts), "
               f"{len(d.intake)} new students in {cohort}, in {data_dir}")
    from flows.pipeline import yearly_flow

    try:
        out = yearly_flow(str(DEMO_CONFIG), str(paths["history"]), str(paths["intake"]), home=str(settings.home))
    except _known_errors() as exc:
        _fail(exc)
    _print_training(out["train"])
    _print_scoring(out["score"])
    _print_reports(out["report"])
    typer.echo(f"\nReal outcomes of {cohort}, for when you want to try the outcomes report: {paths['outcomes']}")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Past cohorts with outcomes: CSV/Parquet, or a raw-source folder.")],
    config: ConfigOpt,
    home: HomeOpt = None,
    force: Annotated[bool, typer.Option(help="Make the new model champion even if it validates worse.")] = False,
) -> None:
    """Train a model on past cohorts, validate it on cohorts it never saw, and register it."""
    _env()
    from flows.pipeline import train_flow

    try:
        _print_training(train_flow(str(config), str(data), _home(home), force))
    except _known_errors() as exc:
        _fail(exc)


@app.command()
def score(
    data: Annotated[Path, typer.Argument(help="The new intake, without outcomes: CSV/Parquet, or a raw-source folder.")],
    config: ConfigOpt,
    home: HomeOpt = None,
    cohort: CohortOpt = None,
    factors: Annotated[bool, typer.Option(help="Compute each student's top contributing factors.")] = True,
) -> None:
    """Score a new intake with the champion model and store the scores for advising tools."""
    _env()
    from flows.pipeline import score_flow

    try:
        _print_scoring(score_flow(str(config), str(data), _home(home), cohort, factors))
    except _known_errors() as exc:
        _fail(exc)


@app.command()
def report(
    data: Annotated[Path, typer.Argument(help="The scored intake (same file you scored).")],
    config: ConfigOpt,
    home: HomeOpt = None,
    cohort: CohortOpt = None,
    strict: Annotated[bool, typer.Option(help="Exit with code 3 when a report raises a warning.")] = False,
) -> None:
    """Write the HTML reports comparing the new intake with the training cohorts."""
    _env()
    from flows.pipeline import report_flow

    try:
        out = report_flow(str(config), str(data), _home(home), cohort)
    except _known_errors() as exc:
        _fail(exc)
    _print_reports(out)
    if strict and any(r["warning"] for r in out):
        typer.secho("A report crossed its warning threshold (--strict).", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=3)


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
