"""Every error the API answers is shaped ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.enqueue_requests import describe_validation
from orchestrator.errors import (
    ConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    JobValidationError,
)

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


#: What each documented error status means, for the OpenAPI schema.
_MEANINGS = {
    400: "Malformed JSON (NaN, Infinity and numbers past a float are not JSON: the message "
    "names where such a number is)",
    401: "No key, or an unknown one (only when ORCHESTRATOR_API_KEYS is set)",
    403: "A read key on a write",
    404: "No such id",
    409: "The state or an idempotency key forbids it",
    413: "Body over ORCHESTRATOR_MAX_BODY_BYTES",
    422: "A field outside its bounds, an unknown job, queue or argument",
}


def documented(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the error body's schema; ``meanings``
    (``e409="..."``) say what a status means for this route."""
    return {
        status: {
            "model": ErrorBody,
            "description": meanings.get(f"e{status}", _MEANINGS[status]),
        }
        for status in statuses
    }


#: Every /api route may answer these (keys, body limit).
API_ERRORS = documented(401, 403, 422)
#: Routes that read a JSON body.
BODY_ERRORS = documented(400, 413, 422)


class ApiError(Exception):
    """An error the API answers with a given status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        context = detail.get("ctx", {}).get("error", "")
        return error_response(400, "malformed_json", f"the body is not valid JSON: {context}")
    return error_response(422, "invalid_request", describe_validation(errors))


async def _job_validation(_: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_job", str(exc))


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "conflict", str(exc))


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable: %r", exc)
    return error_response(
        503, "store_unavailable", "the job store cannot be reached; nothing was changed, try again"
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred; see the API's log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(JobValidationError, _job_validation)
    app.add_exception_handler(JobNotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(IllegalTransitionError, _conflict)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    for unavailable in (OSError, sa_exc.OperationalError, sa_exc.InterfaceError):
        app.add_exception_handler(unavailable, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)
