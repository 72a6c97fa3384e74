"""POST /v1/score: records checked against the champion's contract, scored, nothing stored."""

import logging
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from api.answers import factor_dicts
from api.champions import contract_of, record_validator
from api.cursors import bad_input
from api.deps import ApiState
from risk_model.config import DatasetContract, ScoringConfig
from risk_model.registry import Bundle, RegistryError
from risk_model.schema import ContractError, check_records

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


def checked_records(
    validator: TypeAdapter, contract: DatasetContract, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The records typed and checked (`schema.check_records`, no frame for the usual valid request); 422
    naming record and field, never echoing a value, or with the contract's message (all problems at once)."""
    try:
        rows = validator.validate_python(records)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {"loc": ("body", "records", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        ) from None
    try:
        return check_records([r.model_dump(by_alias=True) for r in rows], contract, source="request")
    except ContractError as exc:
        raise bad_input(("body", "records"), str(exc), "contract") from None


FactorChoice = Literal["tiers", "all", "none", "true", "false"]


def tiers_of(p: np.ndarray, floors: dict[str, float]) -> np.ndarray:
    """The tier each probability gets by a stored cohort's boundaries: high at or above its floor, else
    medium at or above its floor, else low (None for every record when no cohort is stored)."""
    out = np.full(len(p), "low" if floors else None, dtype=object)
    for tier in ("medium", "high"):  # high last: it wins where both floors are reached
        if tier in floors:
            out[p >= floors[tier]] = tier
    return out


def score_records(
    api: ApiState, records: list[dict[str, Any]], point: str | None, factors: FactorChoice = "tiers"
) -> dict[str, Any]:
    """Score records with the point's champion; tiers by the newest stored cohort's boundaries. The answer is
    the `api.models.ScoreResponse` document as plain values, written to JSON as it is: building the models
    (`model_construct`, 4,000 of them for 1,000 explained records) was a fifth of the request; a test checks
    the document against the model.

    Records go the per-record way (`check_records`, `score_rows`: a NumPy array in the booster's feature
    order), not the frame path built for files; both give the same probabilities and factors. `factors`:
    "tiers" explains the records whose tier is one the stored cohort explained at scoring (every record
    when no cohort is stored); "all" (or "true") every record; "none" (or "false") none."""
    from risk_model.score import record_codes, score_rows, unseen_lines

    point, bundle = champion_for(api, point)
    contract = api.champions.derived(bundle, "contract", contract_of)
    rows = checked_records(api.champions.derived(bundle, "records", record_validator), contract, records)
    basis, floors, explained = api.tier_floors(point)

    def acted_on(p: np.ndarray) -> np.ndarray:
        return np.isin(tiers_of(np.round(p, 6), floors), list(explained))

    which = acted_on if factors == "tiers" and floors else None
    try:
        codes = api.champions.derived(bundle, "codes", record_codes)
        p, factor_lists, unseen = score_rows(
            bundle, rows, ScoringConfig(), factors=factors not in ("none", "false"), codes=codes, explain_if=which
        )
    except MISMATCH_ERRORS as exc:  # the model and its metadata.json disagree: not the caller's fault
        log.error("Point %s: model %s cannot score (%s)", point, bundle.version, type(exc).__name__)
        raise HTTPException(
            503, f"The champion model {bundle.version} does not match its metadata; scoring is unavailable."
        ) from None
    id_column, labels = contract.id_column, contract.feature_labels
    shown = np.round(p, 6)
    results = [
        {
            "index": i,
            "student_id": row[id_column],
            "probability": prob,
            "tier": tier,
            "factors": factor_dicts(found, labels),
            "explained": bool(found),
        }
        for i, (row, prob, tier, found) in enumerate(
            zip(rows, shown.tolist(), tiers_of(shown, floors).tolist(), factor_lists, strict=True)
        )
    ]
    return {
        "model_version": bundle.version,
        "point": point,
        "tier_basis": f"tier boundaries of cohort {basis} (point {point})" if floors else None,
        "warnings": unseen_lines(unseen, bundle.mix),
        "results": results,
    }
