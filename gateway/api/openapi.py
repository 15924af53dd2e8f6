"""The API described: one declarative table of operations, turned into an OpenAPI 3.1 document.

Schemas come from the pydantic models themselves (`models_json_schema`), error statuses and their
codes from the `GatewayError` tree, so nothing here repeats what those define. A route added to
the app must get a row here: tests/test_openapi.py fails for any `/api/` route the table lacks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.api import saved
from gateway.api.auth import HEADER, QUERY
from gateway.api.gallery import MAX_LIMIT
from gateway.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from gateway.errors import GatewayError
from gateway.models import (
    CancelledCount,
    DeliveryList,
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    ImageItem,
    ImageList,
    JobProgress,
    JobRecord,
    PresetChange,
    PresetCopy,
    PresetCreate,
    PresetDeleted,
    PresetDetail,
    PresetList,
    PresetSummary,
    PreviewOut,
    QueuePositionOut,
    SavedList,
    SavedRecord,
    SaveRequest,
    StatusOut,
)

OPENAPI_PATH = "/api/v1/openapi.json"
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Stream:
    """A `text/event-stream` answer: each event's name, its `data:` model and what it means."""

    events: tuple[tuple[str, type[BaseModel], str], ...]
    description: str


@dataclass(frozen=True)
class Operation:
    method: Literal["get", "post", "patch", "delete"]
    path: str
    operation_id: str
    summary: str
    tag: str
    ok: dict[int, type[BaseModel] | Stream | None]
    """Success answers by status; None: a JSON object the table does not model (the document itself)."""
    errors: tuple[int, ...] = ()
    """Error statuses beyond the ones every operation can answer (401/403 for keyed ones, 500)."""
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    public: bool = False
    """Needs no API key."""
    description: str = ""
    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    """Response headers by status: name -> description."""


SLUG = Param("slug", "path", {"type": "string"}, "The preset's slug, as `GET /api/v1/presets` lists it.", True)
JOB_ID = Param("job_id", "path", {"type": "string"}, "The job id from the 202 answer of a generate request.", True)
SAVED_ID = Param("saved_id", "path", {"type": "string"}, "A saved result's id.", True)


def _paging(default: int, maximum: int, what: str) -> tuple[Param, Param]:
    return (Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
                  f"{what} per page."),
            Param("offset", "query", {"type": "integer", "minimum": 0, "default": 0}, f"{what} to skip."))


OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/api/v1/presets", "listPresets", "List the presets", "presets", {200: PresetList}),
    Operation("get", "/api/v1/presets/{slug}", "getPreset", "One preset, with each parameter described", "presets",
              {200: PresetDetail}, errors=(404,), params=(SLUG,),
              description="Types, defaults, ranges and where each parameter is bound in the workflow; allowed "
                          "values (checkpoints, samplers, ...) when ComfyUI answers its `/object_info`."),
    Operation("post", "/api/v1/presets", "createPreset", "Create a preset", "presets", {201: PresetSummary},
              errors=(400, 409, 413, 503), body=PresetCreate,
              description="Written to presets.yaml, workflows/ and covers/; live at once. An editor-format "
                          "workflow needs ComfyUI to answer (503 otherwise)."),
    Operation("post", "/api/v1/presets/{slug}/duplicate", "duplicatePreset", "Copy a preset under a new slug",
              "presets", {201: PresetSummary}, errors=(400, 404, 409), body=PresetCopy, params=(SLUG,)),
    Operation("patch", "/api/v1/presets/{slug}", "changePreset", "Change a preset", "presets",
              {200: PresetSummary}, errors=(400, 404, 413, 503), body=PresetChange, params=(SLUG,),
              description="The fields given replace the preset's (`defaults` and `params` as a whole); "
                          "`null` removes an optional one."),
    Operation("delete", "/api/v1/presets/{slug}", "deletePreset", "Delete a preset", "presets",
              {200: PresetDeleted}, errors=(404,), params=(SLUG,)),
    Operation("post", "/api/v1/generate/{slug}", "generate", "Queue images of a preset", "jobs",
              {202: GenerateResponse}, errors=(400, 404, 409, 413, 429, 503), body=GenerateRequest,
              params=(SLUG, Param(IDEMPOTENCY_HEADER, "header", {"type": "string", "maxLength": 255},
                                  "Makes retries safe: the same key and body answer the first 202 again (same "
                                  "job ids); the same key with another body is a 409.")),
              description="One job per image. Every body field is optional; an empty body uses the preset's "
                          "defaults.", headers={429: {"Retry-After": "Seconds to wait before trying again."}}),
    Operation("get", "/api/v1/job/{job_id}", "getJob", "A job's record", "jobs", {200: JobRecord},
              errors=(404,), params=(JOB_ID,),
              description="`status` is `pending`, `processing`, `done` or `failed`; `result` is set when done."),
    Operation("delete", "/api/v1/job/{job_id}", "cancelJob", "Cancel a job", "jobs", {200: JobRecord},
              errors=(404,), params=(JOB_ID,),
              description="Idempotent. A cancelled job reads `failed` with the error `cancelled`."),
    Operation("get", "/api/v1/job/{job_id}/events", "jobEvents", "Live events of one job (Server-Sent Events)",
              "jobs", {200: Stream(
                  events=(("job", JobRecord, "The full record; first, and again at each status change."),
                          ("queue", QueuePositionOut, "The job's place in the queue changed."),
                          ("progress", JobProgress, "Sampler steps of the running node."),
                          ("preview", PreviewOut, "A preview image (only with `previews=1`; throttled)."),
                          ("end", JobRecord, "The final record (done or failed); then the stream closes.")),
                  description="`: keep-alive` comments come every ~15 s. Browsers' EventSource cannot send "
                              f"headers: pass the key as `?{QUERY}=`.")},
              errors=(404,),
              params=(JOB_ID, Param("previews", "query", {"type": "integer", "enum": [0, 1], "default": 0},
                                    "1: also send `preview` events with JPEG data URLs."))),
    Operation("get", "/api/v1/job/{job_id}/deliveries", "jobDeliveries", "A job's webhook deliveries", "jobs",
              {200: DeliveryList}, errors=(404,), params=(JOB_ID,),
              description="Each delivery of the job's webhook events, with every attempt and its outcome."),
    Operation("post", "/api/v1/saved", "saveResult", "Keep a done job's image under a label", "saved",
              {201: SavedRecord}, errors=(400, 404, 409), body=SaveRequest,
              description="Saved images are never removed by output retention. A job that is not done is a 409."),
    Operation("get", "/api/v1/saved", "listSaved", "Saved results, newest first", "saved", {200: SavedList},
              errors=(400,), params=_paging(saved.DEFAULT_LIMIT, saved.MAX_LIMIT, "Saved results")),
    Operation("get", "/api/v1/saved/{saved_id}", "getSaved", "One saved result", "saved", {200: SavedRecord},
              errors=(404,), params=(SAVED_ID,)),
    Operation("delete", "/api/v1/saved/{saved_id}", "deleteSaved", "Remove a saved result and its file", "saved",
              {204: None}, errors=(404,), params=(SAVED_ID,)),
    Operation("post", "/api/v1/interrupt", "interruptAll", "Cancel every waiting and running job", "jobs",
              {200: CancelledCount}),
    Operation("get", "/api/v1/images", "listImages", "The gallery: result images, newest first", "images",
              {200: ImageList}, errors=(400,),
              params=(*_paging(50, MAX_LIMIT, "Images"),
                      Param("preset", "query", {"type": "string"}, "Only images of this preset (its slug)."))),
    Operation("get", "/api/v1/images/events", "imageEvents", "New images as they are made (Server-Sent Events)",
              "images", {200: Stream(events=(("image", ImageItem, "One new result image."),),
                                     description="`: keep-alive` comments come every ~15 s.")}),
    Operation("get", "/api/v1/status", "getStatus", "Queue counts, ComfyUI's state and wait estimates", "server",
              {200: StatusOut}),
    Operation("get", OPENAPI_PATH, "getOpenApi", "This document", "server", {200: None}, public=True),
)


def public_paths() -> frozenset[str]:
    """Paths under `/api/` that need no key."""
    return frozenset(op.path for op in OPERATIONS if op.public)


def _error_codes() -> dict[int, list[str]]:
    """Every error code the gateway answers with, by HTTP status, from the error classes."""
    def walk(cls: type[GatewayError]) -> Iterator[type[GatewayError]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from walk(sub)

    codes: dict[int, list[str]] = {}
    for cls in walk(GatewayError):
        if cls.code not in codes.setdefault(cls.status, []):
            codes[cls.status].append(cls.code)
    return codes


def _schemas() -> tuple[dict[Any, Any], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        for answer in op.ok.values():
            if isinstance(answer, Stream):
                wanted += [(model, "serialization") for _, model, _ in answer.events]
            elif answer is not None:
                wanted.append((answer, "serialization"))
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=_REF)
    return refs, defs.get("$defs", {})


def _error_response(status: int, codes: list[str], error_ref: Any) -> dict[str, Any]:
    listed = ", ".join(f"`{c}`" for c in codes)
    return {"description": f"Error ({listed}).", "content": {"application/json": {"schema": error_ref}}}


def _ok_response(status: int, answer: type[BaseModel] | Stream | None, refs: dict[Any, Any]) -> dict[str, Any]:
    if status == 204:
        return {"description": "Done; no body."}
    if isinstance(answer, Stream):
        lines = [f"- `{name}`: {model.__name__}. {text}" for name, model, text in answer.events]
        return {"description": "\n".join([f"Server-Sent Events. {answer.description}", "", *lines]),
                "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "x-events": {name: refs[(model, "serialization")] for name, model, _ in answer.events},
                }}}
    if answer is None:
        return {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    doc = (answer.__doc__ or "").strip().splitlines()
    return {"description": doc[0] if doc and answer.__doc__ != BaseModel.__doc__ else "OK",
            "content": {"application/json": {"schema": refs[(answer, "serialization")]}}}


def _operation(op: Operation, refs: dict[Any, Any], codes: dict[int, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
                              "description": p.description} for p in op.params]
    if op.body is not None:
        out["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": refs[(op.body, "validation")]}}}
    responses: dict[str, Any] = {str(status): _ok_response(status, answer, refs) for status, answer in op.ok.items()}
    statuses = {*op.errors, *(() if op.public else (401, 403)), 500}
    error_ref = refs[(ErrorBody, "serialization")]
    for status in sorted(statuses):
        responses[str(status)] = _error_response(status, codes[status], error_ref)
    for status, headers in op.headers.items():
        responses[str(status)]["headers"] = {name: {"description": text, "schema": {"type": "integer"}}
                                             for name, text in headers.items()}
    out["responses"] = responses
    if op.public:
        out["security"] = []
    return out


def _version() -> str:
    try:
        return version("comfy-gateway")
    except PackageNotFoundError:
        return "0"


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the v1 API (built once)."""
    refs, schemas = _schemas()
    codes = _error_codes()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs, codes)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "comfy-gateway",
            "version": _version(),
            "description": "A durable REST API in front of ComfyUI: images by preset slug, a queue that survives "
                           f"crashes. Every `/api/` route needs a key: the `{HEADER}` header or the `?{QUERY}=` "
                           "query. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        },
        "tags": [{"name": n} for n in ("presets", "jobs", "images", "saved", "server")],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": HEADER},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": QUERY},
            },
        },
        "security": [{"apiKeyHeader": []}, {"apiKeyQuery": []}],
    }
