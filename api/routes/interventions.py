"""What advisors did for a student: recorded by advising tools with a `write` (or `admin`) key."""

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from api import answers
from api.cursors import bad_input
from api.deps import KeyFirstRoute, State, WriteKey
from api.errors import AUTH, problems
from api.models import Intervention, InterventionIn
from api.routes.params import StudentId
from risk_model import advising, store

router = APIRouter(prefix="/v1/students", tags=["interventions"], route_class=KeyFirstRoute)


@router.post(
    "/{student_id}/interventions",
    status_code=201,
    response_model=Intervention,
    responses=problems(400, 404, 413) | AUTH,
)
async def record_intervention(api: State, key: WriteKey, student_id: StudentId, body: InterventionIn) -> Intervention:
    """Record a call, email, meeting, referral or other contact with a scored student. Audited. The note is
    stored for the advising tool (shown by GET /v1/students/{id}) and never in a report or a log; it is not
    echoed back here."""
    if body.date > (datetime.now(UTC) + timedelta(days=1)).date():
        raise bad_input(("body", "date"), "The date is in the future: give the day the advisor acted.")

    def write() -> dict | None:
        scored = store.student_scores(api.engine, student_id, key_id=None, cohort=body.cohort)
        if not scored:
            return None
        cohort = body.cohort or answers.latest(scored)["cohort"]
        audit = store.audit_row(key.id, "intervention", student_id, cohort, None)
        return advising.add_intervention(
            api.engine,
            student_id,
            kind=body.kind,
            on_date=body.date,
            staff_id=body.staff_id,
            key_id=key.id,
            note=body.note,
            cohort=cohort,
            audit=audit,
        )

    row = await run_in_threadpool(write)
    if row is None:
        raise HTTPException(
            404, "No stored score for this student" + (" in this cohort." if body.cohort else ".") + " Check the id."
        )
    return Intervention(
        id=row["id"],
        kind=row["kind"],
        date=row["on_date"],
        staff_id=row["staff_id"],
        cohort=row["cohort"],
        recorded_at=answers.utc(row["recorded_at"]),
    )
