"""Exception handlers: a store outage is 503, and a 422 names where, never what was sent."""

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError as SqlDataError
from sqlalchemy.exc import DBAPIError

from api.models import Problem

log = logging.getLogger(__name__)


def problems(code: int, *more: int) -> dict:
    """OpenAPI `responses` for these status codes, each a `Problem`."""
    return {c: {"model": Problem} for c in (code, *more)}


AUTH = problems(401, 403)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without `input` and `ctx`: a record (every student id) is never echoed back."""
    assert isinstance(exc, RequestValidationError)  # registered for that type only
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


async def store_down(request: Request, exc: Exception) -> JSONResponse:
    """503 when the store does not answer; 422 for a value the database refuses (input, not outage)."""
    error = getattr(exc, "orig", exc)
    route = getattr(request.scope.get("route"), "path", "?")  # the template: no student id in the log
    if isinstance(error, psycopg.DataError | SqlDataError):
        return JSONResponse({"detail": "A value in the request cannot be stored or searched."}, status_code=422)
    log.error("Store error on %s %s: %s", request.method, route, type(error).__name__)
    return JSONResponse({"detail": "The score store is not answering; try again shortly."}, status_code=503)


def add_handlers(app: FastAPI) -> None:
    """Install the handlers above."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(DBAPIError, store_down)
    app.add_exception_handler(psycopg.Error, store_down)  # the async lookup path, a pool timed out or closed
