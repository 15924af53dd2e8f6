"""The OpenAPI document: valid 3.1, complete (every /api/ route of the app), built from the models;
served with /docs and the web page, none of which needs a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from gateway.api.openapi import OPERATIONS, document
from gateway.app import create_app
from gateway.models import GenerateRequest
from gateway.settings import Settings
from tests.conftest import Gateway
from tests.helpers import ROOT

DOC = document()


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(data_dir=tmp_path, presets_path=ROOT / "presets.yaml", api_key="k"))
    return {(route.method.lower(), route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.resource.canonical.startswith("/api/") and route.method != "HEAD"}


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    errors = [str(e) for e in OpenAPIV31SpecValidator(DOC).iter_errors()]
    assert errors == []


def test_the_document_and_the_app_have_the_same_api_routes(tmp_path: Path) -> None:
    described = {(method, path) for path, item in DOC["paths"].items() for method in item}
    routes = app_routes(tmp_path)
    assert not routes - described, f"routes without a row in gateway/api/openapi.py: {sorted(routes - described)}"
    assert not described - routes, f"described routes the app lacks: {sorted(described - routes)}"


def test_operation_ids_are_unique() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_schemas_are_the_models_own() -> None:
    schema = DOC["components"]["schemas"]["GenerateRequest"]
    own = GenerateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schema["properties"] == own["properties"]
    body = DOC["paths"]["/api/v1/generate/{slug}"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/GenerateRequest"}


@pytest.mark.parametrize(
    ("path", "method", "status", "codes"),
    [
        ("/api/v1/generate/{slug}", "post", "400", ["invalid_parameter", "unsupported_parameter"]),
        ("/api/v1/generate/{slug}", "post", "429", ["queue_full"]),
        ("/api/v1/job/{job_id}", "get", "404", ["job_not_found"]),
        ("/api/v1/presets", "get", "401", ["missing_api_key"]),
        ("/api/v1/presets", "get", "403", ["invalid_api_key"]),
    ],
)
def test_error_answers_name_their_codes_and_use_the_error_shape(path: str, method: str, status: str,
                                                                codes: list[str]) -> None:
    answer = DOC["paths"][path][method]["responses"][status]
    assert all(f"`{code}`" in answer["description"] for code in codes)
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_event_streams_are_text_event_stream() -> None:
    answer = DOC["paths"]["/api/v1/job/{job_id}/events"]["get"]["responses"]["200"]
    stream = answer["content"]["text/event-stream"]
    assert set(stream["x-events"]) == {"job", "queue", "progress", "preview", "end"}
    assert stream["x-events"]["job"] == {"$ref": "#/components/schemas/JobRecord"}
    assert "text/event-stream" in DOC["paths"]["/api/v1/images/events"]["get"]["responses"]["200"]["content"]


def test_both_ways_of_sending_the_key_are_described() -> None:
    schemes = DOC["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {("header", "X-API-Key"), ("query", "api_key")}
    assert DOC["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


async def test_document_docs_and_page_need_no_key(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert await resp.json() == DOC
    for path, kind, text in [("/docs", "text/html", "swagger-ui-bundle.js"), ("/", "text/html", "/web/app.js"),
                             ("/web/app.js", "javascript", "EventSource"), ("/web/app.css", "text/css", ""),
                             ("/docs/assets/swagger-ui-bundle.js", "javascript", "SwaggerUIBundle"),
                             ("/docs/assets/swagger-ui.css", "text/css", "")]:
        resp = await gateway.client.get(path)
        assert resp.status == 200, path
        assert kind in resp.headers["Content-Type"], path
        assert text in await resp.text(), path


@pytest.mark.parametrize("path", ["/web/nope.js", "/web/..%2Fapi%2Fv1.py", "/docs/assets/index.html",
                                  "/docs/assets/..%2F..%2F__init__.py", "/web/.hidden"])
async def test_only_the_shipped_files_are_served(gateway: Gateway, path: str) -> None:
    resp = await gateway.client.get(path)
    assert resp.status == 404
    body: dict[str, Any] = await resp.json()
    assert body["error"]["code"] == "not_found"


async def test_the_rest_of_the_api_still_needs_a_key(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/presets/example_01")
    assert resp.status == 401
