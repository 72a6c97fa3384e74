"""POST /v1/score: records checked against the champion's contract, scored, nothing stored."""

import logging
from typing import Any

import lightgbm as lgb
import pandas as pd
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from api.answers import factors
from api.champions import contract_of, record_validator
from api.cursors import bad_input
from api.deps import ApiState
from api.models import ScoredRecord, ScoreResponse
from risk_model.config import DatasetContract, ScoringConfig
from risk_model.registry import Bundle, RegistryError
from risk_model.schema import ContractError, validate

log = logging.getLogger(__name__)

MISMATCH_ERRORS = (RegistryError, ValueError, KeyError, IndexError, TypeError, lgb.basic.LightGBMError)


def champion_for(api: ApiState, point: str | None) -> tuple[str, Bundle]:
    """The point (default: the latest) and its champion; 503 when it could not be loaded, 404 if none."""
    point = point or api.champions.latest_point()
    if point is None:
        raise HTTPException(503, "No champion model for prediction point None.")
    bundle = api.champions.get(point)
    if bundle is not None:
        return point, bundle
    failed = api.champions.failure(point)
    if failed is not None:
        raise HTTPException(
            503,
            f"The champion model of point {point!r} ({failed[0]}) could not be loaded; "
            "stored scores are still served. Promote a sound version.",
        )
    raise HTTPException(404, f"No champion model for prediction point {point!r}.")


def checked_frame(validator: TypeAdapter, contract: DatasetContract, records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records as a validated frame; 422 naming record and field, never echoing a value."""
    try:
        rows = validator.validate_python(records)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {"loc": ("body", "records", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        ) from None
    frame = pd.DataFrame([r.model_dump(by_alias=True) for r in rows])
    try:
        return validate(frame, contract, stage="score", source="request")
    except ContractError as exc:
        raise bad_input(("body", "records"), str(exc), "contract") from None


def score_records(api: ApiState, records: list[dict[str, Any]], point: str | None, with_factors: bool) -> ScoreResponse:
    """Score records with the point's champion; tiers by the newest stored cohort's boundaries."""
    from risk_model.score import score

    point, bundle = champion_for(api, point)
    contract = api.champions.derived(bundle, "contract", contract_of)
    frame = checked_frame(api.champions.derived(bundle, "records", record_validator), contract, records)
    warnings: list[str] = []
    try:
        result = score(bundle, frame, contract, ScoringConfig(), factors=with_factors, progress=warnings.append)
    except MISMATCH_ERRORS as exc:  # the model and its metadata.json disagree: not the caller's fault
        log.error("Point %s: model %s cannot score (%s)", point, bundle.version, type(exc).__name__)
        raise HTTPException(
            503, f"The champion model {bundle.version} does not match its metadata; scoring is unavailable."
        ) from None
    basis, floors = api.tier_floors(point)
    out = []
    for i, r in enumerate(result.scores.itertuples(index=False)):
        p = float(r.probability)
        tier = next((t for t in ("high", "medium") if t in floors and p >= floors[t]), "low" if floors else None)
        out.append(
            ScoredRecord(
                index=i,
                student_id=r.student_id,
                probability=p,
                tier=tier,
                factors=factors(r.factors, contract.feature_labels),
            )
        )
    return ScoreResponse(
        model_version=bundle.version,
        point=point,
        warnings=warnings,
        results=out,
        tier_basis=f"tier boundaries of cohort {basis} (point {point})" if floors else None,
    )
