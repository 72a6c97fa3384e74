"""What routes depend on, as `Annotated` aliases: the app's state and the caller's key per scope.

Keys come in the `X-API-Key` header (never a query parameter, so they cannot reach an access
log). Every route under /v1 uses `KeyFirstRoute`, which checks the key before FastAPI reads
the request body: a request without a valid key is refused (401/403) without its body being
buffered. Each refusal is recorded (`auth_failures`: time, reason, route template, key prefix)
and logged at most once a minute with a count.
"""

# No `from __future__ import annotations`: FastAPI resolves these aliases at route definition.
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine

from api import keys
from api.audit import AuditWriter
from api.champions import Champions, natural_key
from api.settings import ApiSettings
from risk_model import store
from risk_model.config import ScoringConfig

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0  # refused keys: one log line per minute at most


@dataclass
class ApiState:
    """Everything the lifespan opens: settings, store, champions, the audit writer, caches."""

    settings: ApiSettings
    engine: Engine
    champions: Champions
    audit: AuditWriter
    lookup_pool: Any = None  # psycopg AsyncConnectionPool on PostgreSQL
    key_cache: dict[str, tuple[keys.ApiKey | None, float]] = field(default_factory=dict)
    floors: dict[str, tuple[float, str | None, dict[str, float], list[str]]] = field(default_factory=dict)

    def tier_floors(self, point: str) -> tuple[str | None, dict[str, float], list[str]]:
        """Tier boundaries of the newest scored cohort of `point` and the tiers its run explained at scoring
        (`[scoring] factor_tiers`; the default for runs that did not say), refreshed like the champion."""
        cached = self.floors.get(point)
        if cached and time.monotonic() - cached[0] < max(self.settings.api_champion_ttl_seconds, 0.5):
            return cached[1], cached[2], cached[3]
        runs = store.latest_runs(self.engine, point)
        cohort = max((r["cohort"] for r in runs), key=natural_key, default=None)
        floors = store.tier_floors(self.engine, cohort, point) if cohort else {}
        summary = (store.run_summary(self.engine, cohort, point) or {}) if cohort else {}
        explained = (summary.get("factors") or {}).get("tiers") or list(ScoringConfig().factor_tiers)
        self.floors[point] = (time.monotonic(), cohort, floors, explained)
        return cohort, floors, explained


def get_state(request: Request) -> ApiState:
    """The state the lifespan made."""
    return request.app.state.api


async def state_of(request: Request) -> ApiState:
    """`get_state` as a dependency: async, so FastAPI calls it in the event loop, not in a worker thread
    (a sync dependency costs every request a thread hop, which under load meant waiting for the GIL)."""
    return request.app.state.api


State = Annotated[ApiState, Depends(state_of)]

_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="A key from `student-risk keys create --scope read|score|write|admin`.",
)


class _RefusalLog:
    """Logs refused keys at most once per `LOG_EVERY_SECONDS`, with how many there were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -LOG_EVERY_SECONDS
        self._count = 0

    def note(self, reason: str, route: str) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < LOG_EVERY_SECONDS:
                return
            count, self._count, self._last = self._count, 0, now
        log.warning("Refused API key (%s on %s); %d refusal(s) since the last such line", reason, route, count)


refusals = _RefusalLog()


def _refuse(request: Request, status: int, reason: str, detail: str, key: str | None) -> HTTPException:
    route = getattr(request.scope.get("route"), "path", "?")  # the template: no student id
    refusals.note(reason, route)
    row = {"at": datetime.now(UTC), "reason": reason, "route": route[:128], "key_prefix": key[:10] if key else None}
    get_state(request).audit.enqueue(store.auth_failures, [row])
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return HTTPException(status, detail, headers)


async def check_key(request: Request, key: str | None, scope: keys.Scope) -> keys.ApiKey:
    """The caller's key, which must exist, be active and allow `scope`; else 401 / 403."""
    if not key:
        raise _refuse(request, 401, "missing", "Missing API key: send it in the X-API-Key header.", None)
    api = get_state(request)
    digest = keys.hash_key(key)
    hit = api.key_cache.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        found = hit[0]
    else:
        found = await run_in_threadpool(keys.find_key, api.engine, key)
        if api.settings.api_key_cache_seconds > 0:
            if len(api.key_cache) > 10_000:
                api.key_cache.clear()
            api.key_cache[digest] = (found, time.monotonic() + api.settings.api_key_cache_seconds)
    if found is None:
        raise _refuse(request, 401, "unknown", "Unknown or revoked API key.", key)
    if not found.allows(scope):
        detail = f"This key has scope {found.scope!r}; this request needs {scope!r} (or admin)."
        raise _refuse(request, 403, "scope", detail, key)
    return found


def require(scope: keys.Scope) -> Callable:
    """A dependency: the caller's key for `scope` (checked already by `KeyFirstRoute`)."""

    async def key_for_scope(request: Request, key: Annotated[str | None, Security(_key_header)] = None) -> keys.ApiKey:
        checked = getattr(request.state, "api_key", None)
        return checked if checked is not None else await check_key(request, key, scope)

    key_for_scope.scope = scope  # type: ignore[attr-defined]  # read by KeyFirstRoute
    return key_for_scope


ReadKey = Annotated[keys.ApiKey, Security(require("read"))]
ScoreKey = Annotated[keys.ApiKey, Security(require("score"))]
WriteKey = Annotated[keys.ApiKey, Security(require("write"))]
AdminKey = Annotated[keys.ApiKey, Security(require("admin"))]


def _scope_of(dependant: Any) -> str | None:
    for dep in dependant.dependencies:
        scope = getattr(dep.call, "scope", None) or _scope_of(dep)
        if scope:
            return scope
    return None


class KeyFirstRoute(APIRoute):
    """A route whose key is checked before its body is read (FastAPI reads the body first)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        scope = _scope_of(self.dependant)
        if scope is None:
            return handler

        async def key_then_body(request: Request) -> Any:
            request.state.api_key = await check_key(request, request.headers.get("X-API-Key"), cast(keys.Scope, scope))
            return await handler(request)

        return key_then_body
