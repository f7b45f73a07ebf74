"""FastAPI pieces the HTTP services share: key first, readable bodies, one 4xx body shape.

Why each exists (issue #17, finding 8):

* **Key first.** FastAPI parses and validates a request body before a route's
  dependencies can refuse the caller, so a malformed body to an admin
  endpoint got a 422 describing the payload to someone without a key.
  :func:`key_first_routes` makes every route that depends on the key guard
  check the ``X-API-Key`` header before the body is even read.
* **Readable bodies.** A JSON body that is not UTF-8, or nested deeper than
  the parser's recursion limit, made FastAPI answer an undocumented
  ``400 There was an error parsing the body``; it is a precise 422 instead.
* **One 4xx shape.** FastAPI's validation 422 carries ``detail`` as a list
  (and echoes the offending input, which may be 10 MB or not renderable as
  JSON), while the services' other refusals carry ``detail`` as a string.
  :func:`install_validation_handler` renders every validation failure as
  :class:`ValidationFailure`: ``detail`` a string naming each field and what
  is wrong, ``errors`` the same per field, never the input itself.

FastAPI is imported here, so only the HTTP services import this module.
No ``from __future__ import annotations``: FastAPI reads the guard's
parameter annotations at runtime.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field, SecretStr
from starlette.responses import Response

from rtml_common.service_config import API_KEY_HEADER, KeyRejected, verify_api_key

#: Longest ``detail`` of a validation failure (a body with thousands of bad items
#: must not produce a megabyte of error text).
MAX_DETAIL_CHARS = 2000
#: Most per-field errors listed in ``errors``.
MAX_ERRORS = 20

KeyGuard = Callable[..., None]


class ErrorBody(BaseModel):
    """A refused request."""

    detail: str = Field(examples=["model 'fraud-detector' has no version 9"])


class FieldError(BaseModel):
    """One invalid part of a request (never its value)."""

    loc: list[str | int] = Field(examples=[["body", "actor"]])
    msg: str = Field(examples=["String should have at least 1 character"])
    type: str = Field(examples=["string_too_short"])


class ValidationFailure(ErrorBody):
    """A malformed request (422): ``detail`` says what is wrong, ``errors`` per field."""

    errors: list[FieldError] = Field(default_factory=list)


def key_guard(expected: Callable[[Request], SecretStr | None], unset_detail: str,
              description: str) -> KeyGuard:
    """A dependency refusing the request unless it carries the expected ``X-API-Key``.

    403 when no key is configured (``unset_detail``), 401 for a missing or
    wrong key. ``expected`` reads the configured key from the request (its
    app's settings). Pass the result to :func:`key_first_routes` as well, so
    the check also runs before the body is parsed.
    """
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description=description)

    def require_key(request: Request,
                    key: Annotated[str | None, Security(header)] = None) -> None:
        try:
            verify_api_key(expected(request), key, unset_detail)
        except KeyRejected as rejected:
            headers = {"WWW-Authenticate": API_KEY_HEADER} if rejected.status == 401 else None
            raise HTTPException(rejected.status, rejected.detail, headers=headers) from None

    return require_key


def key_first_routes(app: FastAPI, guard: KeyGuard) -> None:
    """Routes added to ``app`` from now on check ``guard`` before reading the body.

    Applies to the routes whose dependencies include ``guard``; every route
    with a body also gets the readability check (:func:`check_json_body`).
    """

    class KeyFirstRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            guarded = _depends_on(self.dependant, guard)
            has_body = self.body_field is not None
            if not guarded and not has_body:
                return handler

            async def checked(request: Request) -> Response:
                if guarded:
                    guard(request, request.headers.get(API_KEY_HEADER))
                if has_body:
                    check_json_body(await request.body(), request.headers.get("content-type"))
                return await handler(request)

            return checked

    app.router.route_class = KeyFirstRoute


def check_json_body(body: bytes, content_type: str | None) -> None:
    """422 for a JSON body FastAPI's parser would fail on with an undocumented 400.

    Syntax errors are left to FastAPI (they become the usual 422).
    """
    if not body or (content_type is not None and "json" not in content_type.lower()):
        return
    try:
        json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestValidationError([{
            "type": "json_invalid", "loc": ("body", exc.start),
            "msg": f"body is not UTF-8 (byte {exc.start}): JSON must be UTF-8 encoded",
            "input": None}]) from None
    except RecursionError:
        raise RequestValidationError([{
            "type": "json_invalid", "loc": ("body",),
            "msg": "body is nested too deeply to parse", "input": None}]) from None
    except ValueError:
        return


def install_validation_handler(app: FastAPI) -> None:
    """Render every request validation failure as :class:`ValidationFailure`."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_failure(exc.errors()).model_dump(mode="json"),
                            status_code=422)


def validation_failure(errors: Any) -> ValidationFailure:
    """The 422 body for pydantic/FastAPI ``errors()`` (without the inputs)."""
    fields = [FieldError(loc=[part if isinstance(part, int) else str(part)
                              for part in error.get("loc", ())],
                         msg=_message(error), type=str(error.get("type", "invalid")))
              for error in list(errors)[:MAX_ERRORS]]
    detail = "; ".join(f"{'.'.join(str(p) for p in f.loc) or 'request'}: {f.msg}"
                       for f in fields) or "invalid request"
    if len(errors) > MAX_ERRORS:
        detail += f"; and {len(errors) - MAX_ERRORS} more"
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[:MAX_DETAIL_CHARS - 1] + "…"
    return ValidationFailure(detail=detail, errors=fields)


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    reason = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and reason:
        message = f"{message}: {reason}"
    return message[:500]


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)
