"""The fuzzer itself: it must find a 500, an undocumented status and a body off its schema.

A check that cannot fail proves nothing; this small app breaks each rule once.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class Body(BaseModel):
    n: int


class Out(BaseModel):
    detail: str


def broken_app() -> FastAPI:
    app = FastAPI()

    @app.post("/boom")
    def boom(body: Body) -> Out:
        if body.n % 2:
            raise RuntimeError("odd")
        return Out(detail="even")

    @app.get("/teapot")
    def teapot() -> JSONResponse:
        return JSONResponse({"detail": "short and stout"}, status_code=418)

    @app.get("/off-schema", response_model=None, responses={200: {"model": Out}})
    def off_schema() -> JSONResponse:
        return JSONResponse({"detail": 5})

    return app


def test_the_fuzzer_reports_every_kind_of_failure(fuzz_api: Any) -> None:
    report = fuzz_api("broken", schemathesis.openapi.from_asgi("/openapi.json", broken_app()))
    failures = {(f.operation, f.failure.split(":")[0]) for f in report.findings}
    assert ("POST /boom", "Unhandled exception") in failures
    assert ("GET /teapot", "Undocumented status code") in failures
    assert ("GET /off-schema", "Response violates schema") in failures
    assert report.server_errors >= 1
