"""One error shape for every API failure: RFC 9457 problem details.

Every 4xx/5xx from /api/ is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, a machine-readable ``code`` and, for invalid input, ``errors``: a list of
``{"field": "values.name", "message": "…"}`` with dotted paths into the request body.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
# One answer for every 404 raised as Django's Http404 (an unknown or malformed id, another
# tenant's object, an unknown route): its message names a model or a lookup, never the caller's
# business, and the answers must not differ.
NOT_FOUND_DETAIL = "Not found."


class Problem(exceptions.APIException):
    """An API error with a stable code; raise a subclass or Problem(status=…, code=…)."""

    status_code = 400
    default_code = "bad_request"
    default_detail = "The request could not be processed."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
    ):
        super().__init__(detail or self.default_detail, code or self.default_code)
        if status_code:
            self.status_code = status_code
        self.code = code or self.default_code
        self.headers = headers or {}
        self.errors = errors or []


class PaymentRequired(Problem):
    status_code = 402
    default_code = "payment_required"


class ConflictProblem(Problem):
    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(Problem):
    status_code = 413
    default_code = "payload_too_large"


def field_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """Flatten DRF's nested validation detail into dotted field paths."""
    out: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            out.extend(field_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out.extend({"field": prefix, "message": str(item)} for item in detail)
        else:
            for index, item in enumerate(detail):
                out.extend(field_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out.append({"field": prefix, "message": str(detail)})
    return out


def problem_body(
    status_code: int, *, detail: str, code: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return body


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    # imported here: rest_framework.views imports the authentication classes, which import
    # this module (for its Problem classes) before it has finished loading
    from rest_framework.views import exception_handler

    # Django's own exceptions, as DRF would convert them, but with our codes and details
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(NOT_FOUND_DETAIL)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Problem):
        body = problem_body(
            exc.status_code, detail=str(exc.detail), code=exc.code, errors=exc.errors
        )
        for name, value in exc.headers.items():
            response[name] = value
    elif isinstance(exc, exceptions.ValidationError):
        body = problem_body(
            status.HTTP_400_BAD_REQUEST,
            detail="The request has invalid fields.",
            code="invalid",
            errors=field_errors(exc.detail),
        )
    elif isinstance(exc, exceptions.Throttled):
        # Retry-After in whole seconds, never 0 (DRF leaves the header out for a zero wait)
        wait = max(1, int(exc.wait or 1))
        response["Retry-After"] = str(wait)
        body = problem_body(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many requests. Try again in {wait} seconds.",
            code="rate_limited",
        )
    else:
        # DRF answered, so exc is an APIException
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        detail = str(exc.detail) or str(exc.default_detail)
        body = problem_body(response.status_code, detail=detail, code=str(code))
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_response(
    status_code: int, *, detail: str, code: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    """The same shape for responses made outside DRF (404/500 handlers, middleware)."""
    response = JsonResponse(
        problem_body(status_code, detail=detail, code=code),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response
