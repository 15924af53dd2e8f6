"""Every API request as data, and how its answer is read (pure; the sync and async clients share it).

A `Call` says what to send and turns the answer's status and body into a model, or into `ApiError`.
The clients only carry calls over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import ValidationError

from gateway.models import (
    CancelledCount,
    ErrorBody,
    GenerateResponse,
    ImageList,
    JobRecord,
    PresetDetail,
    PresetList,
    PresetSummary,
    StatusOut,
)
from gateway.sdk.errors import ApiError, ClientError

T = TypeVar("T")

API = "/api/v1"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[Any], T]
    params: Mapping[str, str | int] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None

    def result(self, status: int, body: bytes) -> T:
        """The answer as a model; `ApiError` for an error status, `ClientError` for a body that makes no sense."""
        if status >= 400:
            raise api_error(status, body)
        try:
            return self.read(json.loads(body))
        except (ValueError, ValidationError) as exc:
            raise ClientError(f"unexpected answer to {self.method} {self.path}: {exc}") from exc


def api_error(status: int, body: bytes) -> ApiError:
    """The error of an error answer; a body that is not the gateway's error shape (a proxy's page) still gives one."""
    try:
        detail = ErrorBody.model_validate_json(body).error
    except ValidationError:
        text = body.decode("utf-8", "replace").strip().splitlines()
        message = text[0][:200] if text else "no details"
        return ApiError(status, "http_error", f"HTTP {status}: {message}")
    return ApiError(status, detail.code, detail.message, detail.field, dict(detail.model_extra or {}))


def segment(value: str) -> str:
    """A path segment, escaped so that a slug or id can never reach another route."""
    return quote(value, safe="")


def presets() -> Call[list[PresetSummary]]:
    return Call("GET", f"{API}/presets", lambda body: PresetList.model_validate(body).presets)


def preset(slug: str) -> Call[PresetDetail]:
    return Call("GET", f"{API}/presets/{segment(slug)}", PresetDetail.model_validate)


def generate(slug: str, overrides: Mapping[str, Any]) -> Call[list[str]]:
    """`POST /generate/<slug>`; overrides that are None are left out (the preset's default applies)."""
    body = {name: value for name, value in overrides.items() if value is not None}
    return Call("POST", f"{API}/generate/{segment(slug)}",
                lambda answer: [job.job_id for job in GenerateResponse.model_validate(answer).jobs], json=body)


def job(job_id: str) -> Call[JobRecord]:
    return Call("GET", f"{API}/job/{segment(job_id)}", JobRecord.model_validate)


def cancel(job_id: str) -> Call[JobRecord]:
    return Call("DELETE", f"{API}/job/{segment(job_id)}", JobRecord.model_validate)


def interrupt_all() -> Call[int]:
    return Call("POST", f"{API}/interrupt", lambda body: CancelledCount.model_validate(body).cancelled)


def status() -> Call[StatusOut]:
    return Call("GET", f"{API}/status", StatusOut.model_validate)


def images(limit: int = 50, offset: int = 0, preset: str | None = None) -> Call[ImageList]:
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    if preset is not None:
        params["preset"] = preset
    return Call("GET", f"{API}/images", ImageList.model_validate, params=params)


def is_missing_route(error: ApiError) -> bool:
    """True for a gateway too old to have the route (404 for the route, not for the job)."""
    return error.status == 404 and error.code == "not_found"
