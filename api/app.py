"""The advising API: stored scores, scoring of new records, the model and its reports over HTTP.

`create_app(settings)` builds the app: one router per resource (`api/routes/`), dependencies
as aliases (`api/deps.py`), a request-body limit in front (`api/limits.py`), handlers that
never echo a request (`api/errors.py`). The lifespan connects the store (migrating it), loads
each prediction point's champion once and starts the audit writer; shutdown writes every
queued audit row. A newly promoted champion is picked up without a restart: its pointer file
is stat-ed at most every `api_champion_ttl_seconds`, and a champion that fails to load leaves
the previous one serving (`api/champions.py`). Nothing here logs a request's headers.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from api import lookups
from api.audit import AuditWriter
from api.champions import Champions
from api.cursors import decode_cursor, encode_cursor
from api.deps import ApiState
from api.docs import add_docs
from api.errors import add_handlers
from api.limits import BodyLimit
from api.routes import cohorts, interventions, model, ops, reports, score, students
from api.settings import ApiSettings
from risk_model import store
from risk_model.registry import Registry

__all__ = ["app_from_env", "create_app", "decode_cursor", "encode_cursor"]

log = logging.getLogger(__name__)


def lifespan_for(settings: ApiSettings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the store, the champions and the audit writer for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = store.connect(settings.resolved_store_url, serving=True, durable_audit=settings.api_durable_audit)
        champions = Champions(Registry(settings.registry_dir), settings.api_champion_ttl_seconds)
        loaded = champions.load_all()
        pool = await lookups.open_lookup_pool(engine, durable_audit=settings.api_durable_audit)
        audit = AuditWriter(engine)
        app.state.api = ApiState(settings, engine, champions, audit, pool)
        log.info("Advising API ready: champions %s", loaded or "none")
        try:
            yield
        finally:
            audit.close()  # a clean shutdown writes every queued audit row
            if pool is not None:
                await pool.close()
            engine.dispose()

    return lifespan


def create_app(settings: ApiSettings) -> FastAPI:
    """The API for `settings`: its store, its model registry, its reports folder."""
    app = FastAPI(
        title="student-risk advising API",
        version="1",
        description="Risk scores of incoming students for advising tools. Send an API key in X-API-Key.",
        lifespan=lifespan_for(settings),
        docs_url=None,
        redoc_url=None,
    )
    for router in (
        students.router,
        interventions.router,
        cohorts.router(settings.api_max_page_size),
        score.router(settings.api_max_records),
        model.router,
        reports.router,
        ops.router,
    ):
        app.include_router(router)
    add_handlers(app)
    add_docs(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """The app with settings from the environment (STUDENT_RISK_*): uvicorn's factory."""
    return create_app(ApiSettings())
