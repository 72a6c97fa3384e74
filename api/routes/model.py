"""The champion model of a prediction point."""

from fastapi import APIRouter, HTTPException

from api.answers import expectation, model_info
from api.deps import KeyFirstRoute, ReadKey, State
from api.errors import AUTH, problems
from api.models import ModelInfo
from api.routes.params import PointQuery
from risk_model import store

router = APIRouter(prefix="/v1", tags=["model"], route_class=KeyFirstRoute)


@router.get("/model", response_model=ModelInfo, responses=problems(404) | AUTH)
def model(api: State, key: ReadKey, point: PointQuery = None) -> ModelInfo:
    """The champion: version, training cohorts, validation, real performance so far, model card; and for the
    latest scored cohort of the point, its performance expected before outcomes and the promise made for it."""
    point = point or api.champions.latest_point()
    bundle = api.champions.get(point) if point else None
    if bundle is None or point is None:
        raise HTTPException(404, f"No champion model for prediction point {point!r}.")
    return model_info(
        bundle,
        point,
        api.champions.points(),
        store.scored_outcomes(api.engine, point),
        expectation(api.settings, api.engine, point),
    )
