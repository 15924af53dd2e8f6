"""Idempotency-Key on POST /api/v1/generate/<slug>: through a real gateway on real SQLite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from typing import Any

import pytest

from gateway.api.auth import create_key
from gateway.api.state import STORE
from gateway.settings import Settings
from tests.conftest import Gateway, running_gateway


def job_count(settings: Settings) -> int:
    with sqlite3.connect(settings.database_path) as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


async def post(gw: Gateway, body: Any, key: str | None, *, api_key: str | None = None,
               slug: str = "example_01") -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {**gw.headers, "Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    if key is not None:
        headers["Idempotency-Key"] = key
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await gw.client.post(f"/api/v1/generate/{slug}", data=data, headers=headers)
    return resp.status, await resp.json(), dict(resp.headers)


async def test_a_replay_gets_the_first_answer_and_creates_nothing(gateway: Gateway) -> None:
    status, first, headers = await post(gateway, {"count": 2, "seed": 7, "metadata": {"a": "1", "b": "2"}}, "k-1")
    assert status == 202 and "Idempotent-Replayed" not in headers
    # the same request written differently is the same request
    status, again, headers = await post(gateway, '{"metadata": {"b": "2", "a": "1"},  "seed": 7, "count": 2}', "k-1")
    assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
    assert job_count(gateway.settings) == 2
    status, other, _ = await post(gateway, {"count": 2, "seed": 7, "metadata": {"a": "1", "b": "2"}}, None)
    assert status == 202 and other != first  # no key: a new request
    assert job_count(gateway.settings) == 4


async def test_the_same_key_with_another_body_is_a_conflict(gateway: Gateway) -> None:
    assert (await post(gateway, {"seed": 1}, "k-2"))[0] == 202
    status, body, _ = await post(gateway, {"seed": 2}, "k-2")
    assert status == 409
    assert body["error"]["code"] == "idempotency_key_mismatch"
    assert body["error"]["field"] == "Idempotency-Key"
    status, body, _ = await post(gateway, {"seed": 1}, "k-2", slug="sd15")
    assert status == 409  # the preset is part of the request
    assert job_count(gateway.settings) == 1


async def test_keys_are_scoped_to_the_api_key(gateway: Gateway) -> None:
    _, other_key = await create_key(gateway.client.server.app[STORE], "second")
    _, first, _ = await post(gateway, {"seed": 1}, "shared")
    status, second, headers = await post(gateway, {"seed": 1}, "shared", api_key=other_key)
    assert status == 202 and second != first and "Idempotent-Replayed" not in headers
    status, _, _ = await post(gateway, {"seed": 2}, "shared", api_key=other_key)
    assert status == 409


async def test_concurrent_requests_with_one_key_create_one_set_of_jobs(gateway: Gateway) -> None:
    answers = await asyncio.gather(*(post(gateway, {"count": 3}, "race") for _ in range(8)))
    assert {status for status, _, _ in answers} == {202}
    assert len({json.dumps(body) for _, body, _ in answers}) == 1
    assert sum("Idempotent-Replayed" not in headers for _, _, headers in answers) == 1
    assert job_count(gateway.settings) == 3


async def test_a_key_is_remembered_across_a_restart(settings: Settings) -> None:
    async with running_gateway(settings) as gw:
        _, first, _ = await post(gw, {"count": 2}, "kept")
    async with running_gateway(settings) as gw:
        status, again, headers = await post(gw, {"count": 2}, "kept")
        assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
        assert job_count(settings) == 2


async def test_an_expired_key_is_forgotten(settings: Settings) -> None:
    async with running_gateway(replace(settings, idempotency_hours=1e-9)) as gw:
        _, first, _ = await post(gw, {}, "short")
        await asyncio.sleep(0.01)
        status, second, headers = await post(gw, {}, "short")
        assert status == 202 and second != first and "Idempotent-Replayed" not in headers


async def test_a_refused_request_does_not_use_up_the_key(gateway: Gateway) -> None:
    status, body, _ = await post(gateway, {"count": 99}, "k-3")
    assert (status, body["error"]["field"]) == (400, "count")
    assert (await post(gateway, {"count": 1}, "k-3"))[0] == 202


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there", "ключ"])
async def test_a_malformed_key_is_refused_naming_the_header(gateway: Gateway, key: str) -> None:
    headers = {**gateway.headers, "Idempotency-Key": key}
    resp = await gateway.client.post("/api/v1/generate/example_01", json={}, headers=headers)
    body = await resp.json()
    assert resp.status == 400
    assert body["error"]["field"] == "Idempotency-Key"
    assert job_count(gateway.settings) == 0
