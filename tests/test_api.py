"""The GAZE v1 contract, through a real aiohttp server: paths, fields, statuses, error shape."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, Gateway


def assert_error(body: dict[str, Any], code: str, *, field: str | None = None) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field
        assert field in body["error"]["message"]


@pytest.mark.parametrize("path", ["/api/v1/presets", "/api/v1/job/x", "/api/v1/nope"])
async def test_missing_key_is_401(gateway: Gateway, path: str) -> None:
    resp = await gateway.client.get(path)
    assert resp.status == 401
    assert_error(await resp.json(), "missing_api_key")


async def test_invalid_key_is_403_and_query_key_works(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/presets", headers={"X-API-Key": "wrong"})
    assert resp.status == 403
    assert_error(await resp.json(), "invalid_api_key")
    resp = await gateway.client.get(f"/api/v1/presets?api_key={API_KEY}")
    assert resp.status == 200
    resp = await gateway.client.post("/api/v1/generate/example_01?api_key=bad")
    assert resp.status == 403


async def test_list_presets_has_the_gaze_fields(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/presets", headers=gateway.headers)
    assert resp.status == 200
    presets = (await resp.json())["presets"]
    first = presets[0]
    assert {"preset_id", "slug", "name", "has_cover"} <= set(first)
    assert first["slug"] == first["preset_id"] == "example_01"
    assert first["has_cover"] is False and first["cover_url"] is None
    assert {p["slug"] for p in presets} >= {"example_01", "sd15", "sdxl", "illustrious"}


async def test_generate_answers_202_with_one_queued_job_per_image(gateway: Gateway) -> None:
    resp = await gateway.client.post("/api/v1/generate/example_01", json={"count": 3, "seed": 5},
                                     headers=gateway.headers)
    assert resp.status == 202
    body = await resp.json()
    assert set(body) == {"jobs"}
    assert [set(j) for j in body["jobs"]] == [{"job_id", "status"}] * 3
    assert {j["status"] for j in body["jobs"]} == {"queued"}
    records = [await gateway.job(j["job_id"]) for j in body["jobs"]]
    assert [r["params"]["seed"] for r in records] == [5, 6, 7]
    for record in records:
        assert record["label"] == "Preset: Example Preset"
        assert record["status"] in ("pending", "processing", "done")
        assert list(record)[:5] == ["id", "label", "status", "error", "result"]


async def test_empty_body_means_preset_defaults(gateway: Gateway) -> None:
    for kwargs in ({}, {"data": b""}, {"data": b"  ", "headers": {"Content-Type": "application/json"}}):
        headers = {**gateway.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        resp = await gateway.client.post("/api/v1/generate/example_01", headers=headers, **kwargs)
        assert resp.status == 202, await resp.text()
        record = await gateway.job((await resp.json())["jobs"][0]["job_id"])
        assert record["params"]["width"] == 512
        assert isinstance(record["params"]["seed"], int) and 0 <= record["params"]["seed"] < 2**53


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 21}, "count"),
        ({"count": "3"}, "count"),
        ({"count": 2.0}, "count"),
        ({"count": True}, "count"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "42"}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": 2**64 - 1, "count": 2}, "seed"),
        ({"width": 512}, "height"),
        ({"height": 512}, "width"),
        ({"width": 500, "height": 512}, "width"),
        ({"width": 512, "height": 0}, "height"),
        ({"width": -512, "height": 512}, "width"),
        ({"width": 16384, "height": 512}, "width"),
        ({"width": 8192, "height": 8192}, "width"),
        ({"extra_positive": 5}, "extra_positive"),
        ({"extra_negative": "x" * 10_001}, "extra_negative"),
        ({"prompt": "a cat"}, "prompt"),
        ({"checkpoint": ""}, "checkpoint"),
    ],
)
async def test_bad_parameters_are_400_naming_the_field(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    resp = await gateway.client.post("/api/v1/generate/sd15", json=body, headers=gateway.headers)
    assert resp.status == 400
    assert_error(await resp.json(), "invalid_parameter", field=field)


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object"),
        (b"null", "application/json", "must be a JSON object"),
        (b"count=2", "application/x-www-form-urlencoded", "Content-Type: application/json"),
        (b"\xff\xfe", "application/json", "not valid JSON"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_400(
    gateway: Gateway, data: bytes, content_type: str, message: str
) -> None:
    resp = await gateway.client.post("/api/v1/generate/sd15", data=data,
                                     headers={**gateway.headers, "Content-Type": content_type})
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, "invalid_request")
    assert message in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"checkpoint": "x.safetensors"}, "checkpoint"), ({"extra_positive": "smiling"}, "extra_positive")],
)
async def test_parameters_the_preset_lacks_are_400(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    resp = await gateway.client.post("/api/v1/generate/example_01", json=body, headers=gateway.headers)
    assert resp.status == 400
    assert_error(await resp.json(), "unsupported_parameter", field=field)


async def test_unknown_slug_and_job_are_404(gateway: Gateway) -> None:
    resp = await gateway.client.post("/api/v1/generate/nope", json={}, headers=gateway.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "preset_not_found")
    resp = await gateway.client.get("/api/v1/job/does-not-exist", headers=gateway.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "job_not_found")


async def test_http_errors_share_the_shape(gateway: Gateway) -> None:
    resp = await gateway.client.get("/api/v1/nope", headers=gateway.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")
    resp = await gateway.client.delete("/api/v1/presets", headers=gateway.headers)
    assert resp.status == 405
    assert_error(await resp.json(), "method_not_allowed")
    assert "GET" in resp.headers["Allow"]
    resp = await gateway.client.post("/api/v1/saved", data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
                                     headers={**gateway.headers, "Content-Type": "application/json"})
    assert resp.status == 413
    assert_error(await resp.json(), "payload_too_large")
    resp = await gateway.client.get("/static/uploads/presets/none/gen_1_x.png")
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")


async def test_health(gateway: Gateway) -> None:
    resp = await gateway.client.get("/healthz")
    assert resp.status == 200 and (await resp.json()) == {"status": "ok"}


@pytest.mark.parametrize("path", ["/static/uploads/../gateway.db", "/static/uploads/%2e%2e/gateway.db",
                                  "/static/uploads/presets/x/.gen.png.tmp"])
async def test_static_refuses_paths_outside_uploads(gateway: Gateway, path: str) -> None:
    (gateway.settings.uploads_dir / "presets" / "x").mkdir(parents=True)
    (gateway.settings.uploads_dir / "presets" / "x" / ".gen.png.tmp").write_bytes(b"partial")
    resp = await gateway.client.get(path)
    assert resp.status == 404


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"extra_positive": "\\ud800"}', "extra_positive"),
        (b'{"checkpoint": "a\\u0000b"}', "checkpoint"),
        (b'{"seed": 1e400}', "seed"),
        (b'{"count": NaN}', None),
        (b'{"width": 512, "height": 512, "width": 8}', None),
    ],
)
async def test_unicode_oddities_and_odd_numbers_are_400(gateway: Gateway, raw: bytes, field: str | None) -> None:
    resp = await gateway.client.post("/api/v1/generate/sd15", data=raw,
                                     headers={**gateway.headers, "Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    if field:
        assert body["error"]["field"] == field


async def test_odd_but_valid_unicode_is_accepted(gateway: Gateway) -> None:
    ids = await gateway.generate("sd15", {"extra_positive": "café, 猫, 🐱, \u200b, right-to-left \u202e"})
    record = await gateway.job(ids[0])
    assert record["params"]["positive"].endswith("right-to-left \u202e")


async def test_static_never_serves_outside_uploads_even_through_symlinks(gateway: Gateway, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    folder = gateway.settings.uploads_dir / "presets" / "x"
    folder.mkdir(parents=True)
    (folder / "link.png").symlink_to(secret)
    (folder / "dir").symlink_to(tmp_path)
    for path in ("/static/uploads/presets/x/link.png", "/static/uploads/presets/x/dir/secret.txt",
                 f"/static/uploads/{secret}", f"/static/uploads//{secret}", "/static/uploads/%2Fetc%2Fpasswd",
                 "/static/uploads/..%2f..%2fgateway.db", "/static/uploads/presets/x/%2e%2e/%2e%2e/%2e%2e/gateway.db"):
        resp = await gateway.client.get(path)
        assert resp.status == 404, path
        assert "TOP-SECRET-CONTENT" not in await resp.text()
