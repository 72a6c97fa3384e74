"""Scored cohorts, their students and their alerts, a page at a time."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api import answers, lookups
from api.champions import point_key
from api.cursors import decode_alert_cursor, decode_cursor, encode_alert_cursor, encode_cursor
from api.deps import ApiState, KeyFirstRoute, ReadKey, State
from api.errors import AUTH, problems
from api.models import AlertPage, CohortList, CohortPage, Tier
from api.routes.params import CohortName, PointQuery
from risk_model import advising, store


def latest_point(api: ApiState, cohort: str) -> str:
    """The latest prediction point at which `cohort` was scored; 404 if it never was."""
    points = store.cohort_points(api.engine, cohort)
    if not points:
        raise HTTPException(404, "No scores stored for this cohort.")
    return max(points, key=lambda p: (point_key(p), p))


def cohort_page(api: ApiState, key_id: int, cohort: str, point: str | None, limit: int, **filters: Any) -> CohortPage:
    """One page of a cohort's students, highest risk first, and the cursor of the next one."""
    point = point or latest_point(api, cohort)
    rows = lookups.cohort_page(api.engine, api.audit, cohort, point, key_id=key_id, limit=limit, **filters)
    if not rows and filters.get("after") is None and not store.cohort_points(api.engine, cohort):
        raise HTTPException(404, "No scores stored for this cohort.")
    last = rows[-1] if len(rows) == limit else None
    cursor = encode_cursor(last["probability"], last["student_id"]) if last else None
    return CohortPage(cohort=cohort, point=point, students=rows, next_cursor=cursor)


def router(max_page_size: int) -> APIRouter:
    """The cohorts router; pages hold at most `max_page_size` students."""
    cohorts_router = APIRouter(prefix="/v1/cohorts", tags=["cohorts"], route_class=KeyFirstRoute)
    Limit = Annotated[int, Query(ge=1, le=max_page_size)]

    @cohorts_router.get("", response_model=CohortList, responses=AUTH)
    def cohorts(api: State, key: ReadKey) -> CohortList:
        """Every scored cohort and prediction point with its students per tier, newest first."""
        return answers.cohort_list(store.cohort_summaries(api.engine))

    @cohorts_router.get("/{cohort}/students", response_model=CohortPage, responses=problems(404) | AUTH)
    def cohort_students(
        api: State,
        key: ReadKey,
        cohort: CohortName,
        point: PointQuery = None,
        tier: Tier | None = None,
        min_probability: Annotated[float | None, Query(ge=0, le=1)] = None,
        limit: Limit = 100,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> CohortPage:
        """A cohort's students, highest risk first (ties by student id), one page per call. Audited."""
        after = decode_cursor(cursor) if cursor else None
        return cohort_page(api, key.id, cohort, point, limit, tier=tier, min_probability=min_probability, after=after)

    @cohorts_router.get("/{cohort}/alerts", response_model=AlertPage, responses=AUTH)
    def cohort_alerts(
        api: State,
        key: ReadKey,
        cohort: CohortName,
        point: PointQuery = None,
        limit: Limit = 100,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> AlertPage:
        """A cohort's alerts (risk jumped since the student's previous point): newest first, then the largest
        rise, ties by student id; one page per call (?point= for one point's alerts). Audited."""
        after = decode_alert_cursor(cursor) if cursor else None
        rows = advising.alert_page(api.engine, cohort, limit=limit, point=point, after=after)
        lookups.audit_now(
            api.engine,
            api.audit,
            [store.audit_row(key.id, "alerts", r["student_id"], cohort, r["point"]) for r in rows],
        )
        last = rows[-1] if len(rows) == limit else None
        next_cursor = None
        if last:
            next_cursor = encode_alert_cursor(
                answers.utc(last["created_at"]) or last["created_at"], last["rise"], last["student_id"]
            )
        return AlertPage(cohort=cohort, alerts=[answers.alert(r) for r in rows], next_cursor=next_cursor)

    return cohorts_router
