"""The index of written reports."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.answers import report_index
from api.deps import KeyFirstRoute, ReadKey, State
from api.errors import AUTH
from api.models import ReportIndex

router = APIRouter(prefix="/v1", tags=["reports"], route_class=KeyFirstRoute)


@router.get("/reports", response_model=ReportIndex, responses=AUTH)
def reports(api: State, key: ReadKey, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> ReportIndex:
    """The report index: every report's JSON summary, newest first, with its verdict."""
    return report_index(api.settings, limit)
