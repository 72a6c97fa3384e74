"""The flows as Prefect deployments on a server, and the worker that runs them.

`student-risk deploy` calls `register`: it makes the work pool (type process) if missing,
then creates or updates one deployment per flow (`yearly/student-risk`, `score/...`),
with the schedules and default parameters of `DeploySettings`, and, when a notification
block is named, an automation that tells staff of every failed run. Running it again
updates in place. `student-risk worker` execs `prefect worker start` on the same pool.

Entrypoints are module paths (`flows.pipeline.yearly_flow`): the worker imports the
installed package (the image, or the checkout installed with `pip install -e .`), so no
code is pulled at run time. Paths in parameters are as the worker sees them.

What a run may change is locked down (see `job_template`): the pool's job template fixes
the command (Prefect's engine), the environment and the working folder, and its variables
schema forbids any other key, so the Prefect server itself refuses (422) a run or deployment
whose `job_variables` carry `command`, `env` or `working_dir`. Runs write to the worker's
STUDENT_RISK_HOME: deployments carry no `home`, and a run given one elsewhere is refused
(`flows.settings.run_settings`). The server wants the auth string (PREFECT_API_AUTH_STRING).
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from pathlib import Path
from uuid import UUID

from prefect import Flow
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from flows import partitioned, pipeline
from flows.settings import DeploySettings

log = logging.getLogger(__name__)
TAG = "student-risk"
AUTOMATION = "student-risk: a deployed run failed"
# Library log lines (training progress, verdicts) in the Prefect UI, whatever the worker's env.
RUN_ENV = {"PREFECT_LOGGING_EXTRA_LOGGERS": "risk_model,reports", "DO_NOT_TRACK": "1"}
# The only job variables a deployment or a run may set: harmless labels and log streaming.
RUN_VARIABLES = ("name", "labels", "stream_output")
PLACEHOLDER_AUTH = frozenset({"change-me", "admin:change-me", "admin:admin", "admin:password"})


def flows() -> dict[str, Flow]:
    """The deployable flows by name; `outcomes` once flows/pipeline.py has it."""
    found = {
        "yearly": pipeline.yearly_flow,
        "train": pipeline.train_flow,
        "score": pipeline.score_flow,
        "report": pipeline.report_flow,
        "score-partitioned": partitioned.score_partitioned_flow,
    }
    outcomes = getattr(pipeline, "outcomes_flow", None)
    if isinstance(outcomes, Flow):
        found["outcomes"] = outcomes
    return found


def _abs(path: Path | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def default_parameters(d: DeploySettings) -> dict:
    """Every parameter a deployment may take from the settings; each flow keeps those it has.
    No `home`: runs write to the worker's STUDENT_RISK_HOME."""
    return {
        "config_path": _abs(d.config_path),
        "history_path": _abs(d.history_path),
        "intake_path": _abs(d.intake_path),
        "outcomes_path": _abs(d.outcomes_path),
        "cohort": d.cohort,
        "fail_on_drift": d.fail_on_drift,
        "partitions": d.partitions,
        "dask_address": d.dask_address,
        "dask_workers": d.dask_workers,
    }


def _parameters_for(f: Flow, values: dict) -> dict:
    names = inspect.signature(f.fn).parameters
    return {k: v for k, v in values.items() if k in names and v is not None}


def build(d: DeploySettings) -> list[RunnerDeployment]:
    """One deployment per flow, with schedules, default parameters and tags; not yet sent to a server."""
    for field in ("config_path", "history_path", "intake_path"):
        if getattr(d, field) is None:
            raise ValueError(
                f"The yearly job needs {field}: pass --{field.split('_')[0]} to `student-risk deploy`, "
                f"or set STUDENT_RISK_DEPLOY_{field.upper()} (see docker/.env.example)."
            )
    schedules = {"yearly": [Cron(d.yearly_cron, timezone=d.timezone)]}
    if d.term_cron:
        schedules["score"] = [Cron(d.term_cron, timezone=d.timezone)]
    values = default_parameters(d)
    out = []
    for name, f in flows().items():
        out.append(
            f.to_deployment(
                name=d.name,
                schedules=schedules.get(name, []),
                parameters=_parameters_for(f, values),
                tags=[TAG],
                concurrency_limit=1,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return out


def job_template() -> dict:
    """Prefect's process job template with the command, environment and working folder fixed.

    Prefect 3.8's default exposes `command`, `env` and `working_dir` as job variables, so whoever
    can create a flow run could run any command on the worker. Here they are constants of the
    job configuration (no `{{ }}` placeholder: no command means Prefect's engine; no working_dir
    a fresh temporary folder), and the variables schema allows only RUN_VARIABLES
    (`additionalProperties: false`): the server validates every deployment's and run's job
    variables against it and answers 422. `env` must not be a variable at all: the worker
    merges a run's `env` into a fixed one whatever the schema says."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    job = {k: v for k, v in template["job_configuration"].items() if k not in ("command", "working_dir")}
    job["env"] = dict(RUN_ENV)
    variables = template["variables"]
    variables["properties"] = {k: v for k, v in variables["properties"].items() if k in RUN_VARIABLES}
    variables["additionalProperties"] = False
    variables.pop("required", None)
    return {"job_configuration": job, "variables": variables}


def check_auth() -> None:
    """Refuse to talk to the server with a placeholder auth string (PREFECT_API_AUTH_STRING)."""
    from prefect.settings import get_current_settings

    secret = get_current_settings().api.auth_string
    value = secret.get_secret_value() if secret is not None else ""
    if value.strip().lower() in PLACEHOLDER_AUTH or value.strip().lower().endswith(":change-me"):
        raise ValueError(
            "PREFECT_API_AUTH_STRING is a placeholder: set PREFECT_AUTH_STRING in docker/.env to "
            "`admin:<a long random password>` (e.g. `admin:$(openssl rand -hex 24)`)."
        )


def ensure_work_pool(name: str) -> None:
    """Create the process work pool `name` with the locked `job_template`, or lock an existing one.

    A pool of another type made beforehand (kubernetes, docker) is used as it is: module
    entrypoints run wherever the package is installed; lock its template yourself."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    check_auth()
    template = job_template()
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                log.info("Created work pool %r (type process, locked job template)", name)
                return
            except ObjectAlreadyExists:  # a worker and `deploy` starting together: the other one made it
                pool = client.read_work_pool(name)
        if pool.type != "process":
            log.info("Work pool %r is of type %r: start its own worker, not `student-risk worker`.", name, pool.type)
        elif pool.base_job_template != template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
            log.info("Locked the job template of work pool %r: runs cannot set command, env or working_dir", name)


def ensure_notification(block_slug: str, deployment_ids: list[UUID]) -> UUID:
    """(Re)create the automation that sends a failed, crashed or "Warning" deployed run to a notification block."""
    from prefect.automations import Automation, EventTrigger, SendNotification
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client

    block = Block.load(block_slug)
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(AUTOMATION):
            client.delete_automation(old.id)
    automation = Automation(
        name=AUTOMATION,
        description="Tells staff when the yearly job (or any deployed student-risk run) fails or warns: "
        "bad input data, drift or a performance drop past its threshold, a crash.",
        trigger=EventTrigger(
            # "Warning" is the Completed state a run ends in when a report crossed its threshold
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.Warning"},
            match_related={"prefect.resource.id": [f"prefect.deployment.{i}" for i in deployment_ids]},
            posture="Reactive",
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block._block_document_id,
                subject="student-risk: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}",
                body="Flow run {{ flow.name }}/{{ flow_run.name }} ended {{ flow_run.state.name }}: "
                "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}",
            )
        ],
    ).create()
    return automation.id


def register(d: DeploySettings) -> dict[str, UUID]:
    """Send every deployment to the Prefect server at PREFECT_API_URL; returns `<flow>/<name>` -> id."""
    deployments = build(d)
    ensure_work_pool(d.work_pool)
    ids = {f"{dep.flow_name}/{dep.name}": dep.apply(work_pool_name=d.work_pool) for dep in deployments}
    if d.notify_block:
        ensure_notification(d.notify_block, list(ids.values()))
    return ids


def worker_argv(pool: str, limit: int | None = None, healthcheck: bool = False) -> list[str]:
    """`prefect worker start` for the process pool, with this interpreter (so the package is importable).
    `healthcheck` serves GET /health on PREFECT_WORKER_WEBSERVER_PORT (8080), for container health checks."""
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    if limit:
        argv += ["--limit", str(limit)]
    if healthcheck:
        argv.append("--with-healthcheck")
    return argv


def exec_worker(pool: str, home: Path, limit: int | None = None, healthcheck: bool = False) -> None:
    """Replace this process with a worker; flow runs inherit an absolute STUDENT_RISK_HOME."""
    os.environ["STUDENT_RISK_HOME"] = str(home.expanduser().resolve())
    for key, value in RUN_ENV.items():
        os.environ.setdefault(key, value)
    argv = worker_argv(pool, limit, healthcheck)
    os.execv(argv[0], argv)
