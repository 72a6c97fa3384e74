"""A student's stored risk score."""

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api import answers, lookups
from api.deps import KeyFirstRoute, ReadKey, State
from api.errors import AUTH, problems
from api.models import StudentRisk
from api.routes.params import CohortQuery, PointQuery, StudentId

router = APIRouter(prefix="/v1/students", tags=["students"], route_class=KeyFirstRoute)


@router.get("/{student_id}/risk", response_model=StudentRisk, responses=problems(404) | AUTH)
async def student_risk(
    api: State, key: ReadKey, student_id: StudentId, cohort: CohortQuery = None, point: PointQuery = None
) -> Response:
    """A student's latest score (or of ?cohort=, ?point=): probability, tier, top factors. Audited."""
    rows = await lookups.student_scores(
        api.engine, api.lookup_pool, api.audit, student_id, key_id=key.id, cohort=cohort, point=point
    )
    if not rows:
        raise HTTPException(
            404, "No stored score for this student" + (" with these filters." if cohort or point else ".")
        )
    row = answers.latest(rows)
    labels = api.champions.metadata(row["point"], row["model_version"]).get("feature_labels", {})
    return Response(answers.student_risk_json(student_id, row, labels), media_type="application/json")
