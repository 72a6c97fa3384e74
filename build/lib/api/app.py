"""The advising API: stored scores, scoring of new records, the model and its reports over HTTP.

`create_app(settings)` builds the app; the lifespan hook connects the store (migrating it)
and loads each prediction point's champion once. A newly promoted champion is picked up
without a restart: the champion pointer file is stat-ed at most every
`api_champion_ttl_seconds`. Keys come in the `X-API-Key` header (never a query parameter,
so they cannot reach an access log) and are checked by a dependency per route scope.
Nothing here logs a request's headers.
"""

# No `from __future__ import annotations`: FastAPI must resolve the per-app ScoreRequest model.
import base64
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DataError as SqlDataError
from sqlalchemy.exc import DBAPIError

from api import keys, lookups
from api.champions import Champions, contract_of, natural_key, point_key, record_validator
from api.models import (
    CohortList,
    CohortMetrics,
    CohortPage,
    CohortSummary,
    Factor,
    ModelInfo,
    Problem,
    RealPerformance,
    ReportEntry,
    ReportIndex,
    ScoredRecord,
    ScoreResponse,
    StudentRisk,
    Tier,
    Validation,
    score_request,
)
from api.settings import ApiSettings
from risk_model import store
from risk_model.config import ScoringConfig
from risk_model.registry import Bundle, Registry
from risk_model.schema import ContractError, validate

log = logging.getLogger(__name__)

POINT = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"  # a registry folder name; never a path
TEXT = r"^[^\x00]+$"  # PostgreSQL text cannot hold NUL

# --- state and auth ----------------------------------------------------------------------------


@dataclass
class ApiState:
    settings: ApiSettings
    engine: Engine
    champions: Champions
    lookup_pool: Any = None  # psycopg AsyncConnectionPool on PostgreSQL
    key_cache: dict[str, tuple[keys.ApiKey | None, float]] = field(default_factory=dict)
    floors: dict[str, tuple[float, str | None, dict[str, float]]] = field(default_factory=dict)

    def tier_floors(self, point: str) -> tuple[str | None, dict[str, float]]:
        """Tier boundaries of the newest scored cohort of `point`, refreshed like the champion."""
        cached = self.floors.get(point)
        if cached and time.monotonic() - cached[0] < max(self.settings.api_champion_ttl_seconds, 0.5):
            return cached[1], cached[2]
        runs = store.latest_runs(self.engine, point)
        cohort = max((r["cohort"] for r in runs), key=natural_key, default=None)
        floors = store.tier_floors(self.engine, cohort, point) if cohort else {}
        self.floors[point] = (time.monotonic(), cohort, floors)
        return cohort, floors


def _state(request: Request) -> ApiState:
    return request.app.state.api


_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="A key from `student-risk keys create --scope read|score|admin`."
)


def require(scope: keys.Scope) -> Callable:
    """A dependency: the caller's key, which must exist, be active and allow `scope`."""

    async def check_key(request: Request, key: Annotated[str | None, Security(_key_header)] = None) -> keys.ApiKey:
        if not key:
            raise HTTPException(
                401, "Missing API key: send it in the X-API-Key header.", {"WWW-Authenticate": "ApiKey"}
            )
        api = _state(request)
        digest = keys.hash_key(key)
        hit = api.key_cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            found = hit[0]
        else:
            found = await run_in_threadpool(keys.find_key, api.engine, key)
            if api.settings.api_key_cache_seconds > 0:
                if len(api.key_cache) > 10_000:
                    api.key_cache.clear()
                api.key_cache[digest] = (found, time.monotonic() + api.settings.api_key_cache_seconds)
        if found is None:
            raise HTTPException(401, "Unknown or revoked API key.", {"WWW-Authenticate": "ApiKey"})
        if not found.allows(scope):
            raise HTTPException(403, f"This key has scope {found.scope!r}; this request needs {scope!r} (or admin).")
        return found

    return check_key


def _errors(code: int, *more: int) -> dict:
    return {c: {"model": Problem} for c in (code, *more)}


AUTH = _errors(401, 403)


def _bad(loc: tuple, msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def encode_cursor(probability: float, student_id: str) -> str:
    raw = json.dumps([probability, student_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        p, sid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if (
            isinstance(p, bool)
            or not isinstance(p, int | float)
            or not math.isfinite(p)
            or not isinstance(sid, str)
            or "\x00" in sid
        ):
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        raise _bad(("query", "cursor"), "Not a cursor from this API: pass next_cursor of the previous page.") from None
    return float(p), sid


def _factors(stored: list[dict], labels: dict[str, str]) -> list[Factor]:
    return [
        Factor(
            feature=f["feature"],
            direction=f["direction"],
            label=f"{labels.get(f['feature'], f['feature'].replace('_', ' '))} {f['direction']} risk",
        )
        for f in stored
    ]


def _utc(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t  # SQLite keeps no zone


# --- routes ------------------------------------------------------------------------------------

StudentId = Annotated[str, Path(min_length=1, max_length=128, pattern=TEXT)]
CohortName = Annotated[str, Path(min_length=1, max_length=64, pattern=TEXT)]
PointQuery = Annotated[
    str | None, Query(pattern=POINT, description="Prediction point, e.g. day30; default: the latest one.")
]


def _v1(settings: ApiSettings) -> Any:
    router = APIRouter(prefix="/v1")
    ScoreRequest = score_request(settings.api_max_records)

    @router.get("/students/{student_id}/risk", response_model=StudentRisk, responses=_errors(404) | AUTH)
    async def student_risk(
        request: Request,
        student_id: StudentId,
        key: Annotated[keys.ApiKey, Depends(require("read"))],
        cohort: Annotated[
            str | None, Query(min_length=1, max_length=64, pattern=TEXT, description="Default: the latest.")
        ] = None,
        point: PointQuery = None,
    ) -> Response:
        """A student's latest score (or of ?cohort=, ?point=): probability, tier, top factors. Audited."""
        api = _state(request)
        if api.lookup_pool is not None:  # PostgreSQL: async, no worker thread
            rows = await lookups.student_scores_async(
                api.lookup_pool, student_id, key_id=key.id, cohort=cohort, point=point
            )
        else:
            rows = await run_in_threadpool(
                store.student_scores, api.engine, student_id, key_id=key.id, cohort=cohort, point=point
            )
        if not rows:
            raise HTTPException(
                404, "No stored score for this student" + (" with these filters." if cohort or point else ".")
            )
        row = (
            rows[0]
            if len(rows) == 1
            else max(rows, key=lambda r: (natural_key(r["cohort"]), point_key(r["point"]), str(r["scored_at"])))
        )
        labels = api.champions.metadata(row["point"], row["model_version"]).get("feature_labels", {})
        body = StudentRisk(
            student_id=student_id,
            cohort=row["cohort"],
            point=row["point"],
            probability=row["probability"],
            tier=row["tier"],
            rank=row["rank"],
            factors=_factors(row["factors"], labels),
            model_version=row["model_version"],
            scored_at=_utc(row["scored_at"]),
        )
        return Response(body.model_dump_json(), media_type="application/json")  # validated once, not again by FastAPI

    @router.get("/cohorts", response_model=CohortList, responses=AUTH)
    def cohorts(request: Request, key: Annotated[keys.ApiKey, Depends(require("read"))]) -> CohortList:
        """Every scored cohort and prediction point with its students per tier, newest first."""
        rows = store.cohort_summaries(_state(request).engine)
        rows.sort(key=lambda r: (natural_key(r["cohort"]), point_key(r["point"])), reverse=True)
        return CohortList(cohorts=[CohortSummary(**{**r, "scored_at": _utc(r.get("scored_at"))}) for r in rows])

    @router.get("/cohorts/{cohort}/students", response_model=CohortPage, responses=_errors(404) | AUTH)
    def cohort_students(
        request: Request,
        cohort: CohortName,
        key: Annotated[keys.ApiKey, Depends(require("read"))],
        point: PointQuery = None,
        tier: Tier | None = None,
        min_probability: Annotated[float | None, Query(ge=0, le=1)] = None,
        limit: Annotated[int, Query(ge=1, le=settings.api_max_page_size)] = 100,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> CohortPage:
        """A cohort's students, highest risk first (ties by student id), one page per call. Audited."""
        api = _state(request)
        after = decode_cursor(cursor) if cursor else None
        if point is None:
            points = store.cohort_points(api.engine, cohort)
            if not points:
                raise HTTPException(404, "No scores stored for this cohort.")
            point = max(points, key=lambda p: (point_key(p), p))
        rows = store.cohort_page(
            api.engine,
            cohort,
            point,
            key_id=key.id,
            limit=limit,
            tier=tier,
            min_probability=min_probability,
            after=after,
        )
        if not rows and after is None and not store.cohort_points(api.engine, cohort):
            raise HTTPException(404, "No scores stored for this cohort.")
        last = rows[-1] if len(rows) == limit else None
        return CohortPage(
            cohort=cohort,
            point=point,
            students=rows,
            next_cursor=encode_cursor(last["probability"], last["student_id"]) if last else None,
        )

    @router.post("/score", response_model=ScoreResponse, responses=_errors(400, 404, 503) | AUTH)
    def score_records(
        request: Request,
        body: ScoreRequest,  # type: ignore[valid-type]
        key: Annotated[keys.ApiKey, Depends(require("score"))],
        point: PointQuery = None,
        factors: Annotated[bool, Query(description="Compute each record's top factors (the slow part).")] = True,
    ) -> ScoreResponse:
        """Score records with the champion model without storing them."""
        from risk_model.score import score

        api = _state(request)
        point = point or api.champions.latest_point()
        bundle = api.champions.get(point) if point else None
        if bundle is None:
            raise HTTPException(503 if point is None else 404, f"No champion model for prediction point {point!r}.")
        contract = api.champions.derived(bundle, "contract", contract_of)
        try:
            records = api.champions.derived(bundle, "records", record_validator).validate_python(body.records)
        except ValidationError as exc:
            raise RequestValidationError(
                [  # without the offending input: a record is not echoed back
                    {"loc": ("body", "records", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False, include_context=False)
                ]
            ) from None
        frame = pd.DataFrame([r.model_dump(by_alias=True) for r in records])
        try:
            frame = validate(frame, contract, stage="score", source="request")
        except ContractError as exc:
            raise _bad(("body", "records"), str(exc), "contract") from None
        warnings: list[str] = []
        result = score(bundle, frame, contract, ScoringConfig(), factors=factors, progress=warnings.append)
        basis, floors = api.tier_floors(point)
        labels = contract.feature_labels
        out = []
        for i, r in enumerate(result.scores.itertuples(index=False)):
            p = float(r.probability)
            tier = next((t for t in ("high", "medium") if t in floors and p >= floors[t]), "low" if floors else None)
            out.append(
                ScoredRecord(
                    index=i, student_id=r.student_id, probability=p, tier=tier, factors=_factors(r.factors, labels)
                )
            )
        return ScoreResponse(
            model_version=bundle.version,
            point=point,
            warnings=warnings,
            results=out,
            tier_basis=f"tier boundaries of cohort {basis} (point {point})" if floors else None,
        )

    @router.get("/model", response_model=ModelInfo, responses=_errors(404) | AUTH)
    def model(
        request: Request, key: Annotated[keys.ApiKey, Depends(require("read"))], point: PointQuery = None
    ) -> ModelInfo:
        """The champion: version, training cohorts, validation, real performance so far, model card."""
        api = _state(request)
        point = point or api.champions.latest_point()
        bundle = api.champions.get(point) if point else None
        if bundle is None:
            raise HTTPException(404, f"No champion model for prediction point {point!r}.")
        return model_info(bundle, point, api.champions.points(), store.scored_outcomes(api.engine, point))

    @router.get("/reports", response_model=ReportIndex, responses=AUTH)
    def reports(
        request: Request,
        key: Annotated[keys.ApiKey, Depends(require("read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ReportIndex:
        """The report index: every report's JSON summary, newest first, with its verdict."""
        return report_index(_state(request).settings, limit)

    return router


def model_info(bundle: Bundle, point: str, points: list[str], scored: pd.DataFrame) -> ModelInfo:
    """What GET /v1/model answers, from a bundle and its point's scores joined with outcomes."""
    from risk_model.evaluate import metrics

    md, s = bundle.metadata, bundle.metadata["summary"]
    kind = s.get("validation", "cv")
    by_cohort = md["metrics"].get(kind, {}).get("lightgbm", {})
    real = [
        RealPerformance(
            cohort=c,
            model_version=v,
            **_finite(metrics(g.at_risk.to_numpy(), g.probability.to_numpy(), md["top_k_percent"])),
        )
        for (c, v), g in scored.groupby(["cohort", "model_version"])
    ]
    real.sort(key=lambda r: natural_key(r.cohort), reverse=True)
    return ModelInfo(
        point=point,
        points=points,
        version=bundle.version,
        created_at=md["created_at"],
        training_cohorts=md["training_cohorts"],
        n_training_rows=md["n_training_rows"],
        validation=Validation(
            kind=kind,
            verdict=s["verdict"],
            auc=s.get("validation_auc"),
            train_auc=s.get("train_auc"),
            logistic_auc=s.get("logistic_auc"),
            headline=s["headline"],
            by_cohort={c: CohortMetrics(**_finite(m)) for c, m in by_cohort.items() if c != "all"},
        ),
        real_performance=real,
        model_card=bundle.model_card(),
    )


def _finite(m: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}


def report_index(settings: ApiSettings, limit: int) -> ReportIndex:
    """The newest `limit` report JSON files under the reports folder, each with its verdict."""
    root = settings.reports_dir
    found = []
    for path in root.glob("**/*.json") if root.is_dir() else []:
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            continue
    entries = []
    for mtime, path in sorted(found, reverse=True)[:limit]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        text = {
            k: (str(data[k]) if data.get(k) is not None else None)
            for k in ("report", "cohort", "model_version", "verdict")
        }
        warning = data.get("warning")
        entries.append(
            ReportEntry(
                path=str(path.relative_to(root)),
                **text,
                warning=warning if isinstance(warning, bool) else None,
                modified_at=datetime.fromtimestamp(mtime, UTC),
            )
        )
    return ReportIndex(reports=entries)


# --- the app -------------------------------------------------------------------------------


def create_app(settings: ApiSettings) -> FastAPI:
    """The API for `settings`: its store, its model registry, its reports folder."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = store.connect(settings.resolved_store_url, serving=True, durable_audit=settings.api_durable_audit)
        champions = Champions(Registry(settings.registry_dir), settings.api_champion_ttl_seconds)
        for point in champions.points():
            champions.get(point)
        pool = await lookups.open_lookup_pool(engine, durable_audit=settings.api_durable_audit)
        app.state.api = ApiState(settings, engine, champions, pool)
        log.info("Advising API ready: champions %s", {p: b[1].version for p, b in champions._bundles.items()} or "none")
        yield
        if pool is not None:
            await pool.close()
        engine.dispose()

    app = FastAPI(
        title="student-risk advising API",
        version="1",
        description="Risk scores of incoming students for advising tools. Send an API key in X-API-Key.",
        lifespan=lifespan,
    )
    app.include_router(_v1(settings))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(psycopg.Error)  # the async lookup path, and a pool that timed out or closed
    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        error = getattr(exc, "orig", exc)
        route = getattr(request.scope.get("route"), "path", "?")  # the template: no student id in the log
        if isinstance(error, psycopg.DataError | SqlDataError):  # a value the database refuses (input, not outage)
            return JSONResponse({"detail": "A value in the request cannot be stored or searched."}, status_code=422)
        log.error("Store error on %s %s: %s", request.method, route, type(error).__name__)
        return JSONResponse({"detail": "The score store is not answering; try again shortly."}, status_code=503)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Alive."""
        return {"status": "alive"}

    @app.get("/ready", tags=["ops"], responses=_errors(503))
    def ready(request: Request) -> JSONResponse:
        """Ready when the store answers and at least one champion model is loaded."""
        api = _state(request)
        try:
            store.ping(api.engine)
            reachable = True
        except DBAPIError:
            reachable = False
        champions = {p: b.version for p in api.champions.points() if (b := api.champions.get(p)) is not None}
        ok = reachable and bool(champions)
        body = {
            "status": "ready" if ok else "not ready",
            "store": "ok" if reachable else "unreachable",
            "champions": champions,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app


def app_from_env() -> FastAPI:
    """The app with settings from the environment (STUDENT_RISK_*): uvicorn's factory."""
    return create_app(ApiSettings())
