"""A student's stored risk score, and everything the loop knows about them."""

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api import answers, lookups
from api.deps import KeyFirstRoute, ReadKey, State
from api.errors import AUTH, problems
from api.models import StudentDetail, StudentRisk
from api.routes.params import CohortQuery, PointQuery, StudentId
from risk_model import advising, store

router = APIRouter(prefix="/v1/students", tags=["students"], route_class=KeyFirstRoute)


@router.get("/{student_id}/risk", response_model=StudentRisk, responses=problems(404) | AUTH)
async def student_risk(
    api: State, key: ReadKey, student_id: StudentId, cohort: CohortQuery = None, point: PointQuery = None
) -> Response:
    """A student's latest score (or of ?cohort=, ?point=): probability, tier, top factors (computed on this
    first lookup for a student outside the tiers explained at scoring, then kept). Audited."""
    rows = await lookups.student_scores(
        api.engine, api.lookup_pool, api.audit, student_id, key_id=key.id, cohort=cohort, point=point
    )
    if not rows:
        raise HTTPException(
            404, "No stored score for this student" + (" with these filters." if cohort or point else ".")
        )
    row = answers.latest(rows)
    if row.get("inputs") is not None:  # not explained at scoring: now, once (kept in the store)
        row = (await lookups.explained(api.engine, api.champions, api.audit, [row]))[0]
    labels = api.champions.metadata(row["point"], row["model_version"]).get("feature_labels", {})
    return Response(answers.student_risk_json(student_id, row, labels), media_type="application/json")


@router.get("/{student_id}", response_model=StudentDetail, responses=problems(404) | AUTH)
async def student_detail(api: State, key: ReadKey, student_id: StudentId) -> Response:
    """A student's score at every stored point (history), their alerts and the interventions recorded; factors
    as in /risk. Audited."""

    def read() -> dict:
        history = advising.student_history(api.engine, student_id)
        lookups.audit_now(api.engine, api.audit, [store.audit_row(key.id, "student", student_id, None, None)])
        return history

    history = await run_in_threadpool(read)
    history["scores"] = await lookups.explained(api.engine, api.champions, api.audit, history["scores"])
    if not any(history.values()):
        raise HTTPException(404, "Nothing stored for this student: no score, alert or intervention.")

    def labels_of(point: str, version: str) -> dict[str, str]:
        return api.champions.metadata(point, version).get("feature_labels", {})

    body = answers.student_detail(student_id, history, labels_of)
    return Response(body.model_dump_json(), media_type="application/json")
