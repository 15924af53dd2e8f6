"""Saved results: POST/GET/DELETE /api/v1/saved through a running gateway."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway.api.state import OUTPUTS, REFERENCES, STORE
from gateway.retention import sweep
from tests.conftest import Gateway


async def save(gw: Gateway, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await gw.client.post("/api/v1/saved", json=body, headers=gw.headers)
    return resp.status, await resp.json()


async def done_job(gw: Gateway) -> dict[str, Any]:
    [job_id] = await gw.generate("example_01")
    record = await gw.wait(job_id)
    assert record["status"] == "done"
    return record


async def test_save_get_list_delete(gateway: Gateway) -> None:
    job = await done_job(gateway)
    before = int(time.time())
    status, saved = await save(gateway, {"job_id": job["id"], "label": "CEO hero v2"})
    assert status == 201
    assert set(saved) == {"id", "label", "image_url", "job_id", "created"}
    assert (saved["label"], saved["job_id"]) == ("CEO hero v2", job["id"])
    assert before <= saved["created"] <= int(time.time())
    assert saved["image_url"] != job["result"]["image_url"]
    original = await (await gateway.client.get(job["result"]["image_url"])).read()
    assert await (await gateway.client.get(saved["image_url"])).read() == original

    resp = await gateway.client.get(f"/api/v1/saved/{saved['id']}", headers=gateway.headers)
    assert (resp.status, await resp.json()) == (200, saved)

    resp = await gateway.client.delete(f"/api/v1/saved/{saved['id']}", headers=gateway.headers)
    assert resp.status == 204
    resp = await gateway.client.get(f"/api/v1/saved/{saved['id']}", headers=gateway.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "saved_not_found"
    assert (await gateway.client.get(saved["image_url"])).status == 404
    assert (await gateway.client.get(job["result"]["image_url"])).status == 200  # the result itself stays
    resp = await gateway.client.delete(f"/api/v1/saved/{saved['id']}", headers=gateway.headers)
    assert resp.status == 404


async def test_listing_pages_newest_first(gateway: Gateway) -> None:
    job = await done_job(gateway)
    ids = [(await save(gateway, {"job_id": job["id"], "label": f"v{i}"}))[1]["id"] for i in range(5)]
    resp = await gateway.client.get("/api/v1/saved", headers=gateway.headers)
    page = await resp.json()
    assert ([s["id"] for s in page["saved"]], page["total"], page["limit"], page["offset"]) == (
        ids[::-1], 5, 20, 0)
    resp = await gateway.client.get("/api/v1/saved?limit=2&offset=1", headers=gateway.headers)
    page = await resp.json()
    assert [s["label"] for s in page["saved"]] == ["v3", "v2"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)


async def test_a_saved_result_outlives_retention(gateway: Gateway) -> None:
    job = await done_job(gateway)
    _, saved = await save(gateway, {"job_id": job["id"], "label": "keep"})
    app = gateway.client.server.app
    gallery = await (await gateway.client.get("/api/v1/images", headers=gateway.headers)).json()
    assert (await gateway.client.get(gallery["images"][0]["thumb_url"])).status == 200  # the thumbnail is there
    swept = await sweep(outputs=app[OUTPUTS], references=app[REFERENCES], store=app[STORE], older_than_days=1,
                        now=time.time() + 2 * 86400)
    name = job["result"]["relative_path"].rsplit("/", 1)[1]
    assert sorted(Path(p).name for p in swept.locations) == sorted([name, name.replace(".png", ".webp")])
    assert (await gateway.client.get(job["result"]["image_url"])).status == 404
    assert (await gateway.client.get(saved["image_url"])).status == 200
    status, error = await save(gateway, {"job_id": job["id"], "label": "too late"})
    assert (status, error["error"]["code"]) == (409, "job_not_done")


async def test_a_job_that_is_not_done_cannot_be_saved(gateway: Gateway, fake: Any) -> None:
    fake.stall = True
    try:
        [job_id] = await gateway.generate("example_01")
        status, body = await save(gateway, {"job_id": job_id, "label": "early"})
        assert (status, body["error"]["code"], body["error"]["status"]) == (409, "job_not_done", "pending")
    finally:
        fake.release()
    await gateway.wait(job_id)
    fake.fail_next(1)
    [failed] = await gateway.generate("example_01")
    await gateway.wait(failed)
    status, body = await save(gateway, {"job_id": failed, "label": "broken"})
    assert (status, body["error"]["status"]) == (409, "failed")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"job_id": "no-such-job", "label": "x"}, 404, None),
        ({"job_id": "j"}, 400, "label"),
        ({"job_id": "j", "label": ""}, 400, "label"),
        ({"job_id": "j", "label": "x" * 201}, 400, "label"),
        ({"label": "x"}, 400, "job_id"),
        ({"job_id": "j", "label": "x", "extra": 1}, 400, "extra"),
    ],
)
async def test_bad_save_requests(gateway: Gateway, body: dict[str, Any], status: int, field: str | None) -> None:
    got, error = await save(gateway, body)
    assert got == status
    assert error["error"].get("field") == field


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "offset=-1"])
async def test_bad_list_queries_name_the_parameter(gateway: Gateway, query: str) -> None:
    resp = await gateway.client.get(f"/api/v1/saved?{query}", headers=gateway.headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == query.split("=")[0]


async def test_saved_routes_need_a_key(gateway: Gateway) -> None:
    assert (await gateway.client.get("/api/v1/saved")).status == 401
