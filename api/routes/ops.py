"""Liveness and readiness, without a key."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from api.deps import ApiState, State
from api.errors import problems
from risk_model import store

router = APIRouter(tags=["ops"])


def readiness(api: ApiState) -> tuple[bool, dict]:
    """Ready when the store answers, a champion is loaded and every point's champion pointer loaded."""
    try:
        store.ping(api.engine)
        reachable = True
    except DBAPIError:
        reachable = False
    champions = {p: b.version for p in api.champions.points() if (b := api.champions.get(p)) is not None}
    not_loaded = {
        p: {"version": failed[0], "reason": failed[1]}
        for p in api.champions.points()
        if (failed := api.champions.failure(p)) is not None
    }
    ok = reachable and bool(champions) and not not_loaded
    body: dict[str, object] = {
        "status": "ready" if ok else "not ready",
        "store": "ok" if reachable else "unreachable",
        "champions": champions,
    }
    if not_loaded:
        body["not_loaded"] = not_loaded
    return ok, body


@router.get("/health")
async def health() -> dict[str, str]:
    """Alive."""
    return {"status": "alive"}


@router.get("/ready", responses=problems(503))
def ready(api: State) -> JSONResponse:
    """Ready when the store answers and each point's champion is loaded (`not_loaded` says why not)."""
    ok, body = readiness(api)
    return JSONResponse(body, status_code=200 if ok else 503)
