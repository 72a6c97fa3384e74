"""Scoring of new records with the champion model (nothing stored)."""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic_core import to_json

from api.deps import KeyFirstRoute, ScoreKey, State
from api.errors import AUTH, problems
from api.models import ScoreResponse, score_request
from api.routes.params import PointQuery
from api.scoring import FactorChoice, score_records

Factors = Annotated[
    FactorChoice,
    Query(
        description="Which records get their top factors (exact TreeSHAP, the slow part): `tiers` (default) those "
        "whose tier is one the stored cohort explained at scoring (`[scoring] factor_tiers`, by default high and "
        "medium; every record when no cohort is stored), `all`, or `none`. `true` and `false` mean `all` and `none`."
    ),
]


def router(max_records: int) -> APIRouter:
    """The score router; a request holds at most `max_records` records."""
    score_router = APIRouter(prefix="/v1", tags=["score"], route_class=KeyFirstRoute)
    ScoreRequest = score_request(max_records)

    @score_router.post("/score", response_model=ScoreResponse, responses=problems(400, 404, 413, 503) | AUTH)
    def score(
        api: State,
        key: ScoreKey,
        body: ScoreRequest,  # type: ignore[valid-type]
        point: PointQuery = None,
        factors: Factors = "tiers",
    ) -> Response:
        """Score records with the champion model without storing them."""
        answer = score_records(api, body.records, point, factors)  # type: ignore[attr-defined]
        return Response(to_json(answer), media_type="application/json")  # the service's own values, as they are

    return score_router
