"""Results in an S3-compatible bucket: the gateway against moto's S3 server on a free local port
(a real HTTP server, no network), jobs from the fake ComfyUI (or a real one with COMFYUI_URL).

Covered: uploads with their content type and caching, image URLs at the public base, thumbnails,
saved results as server-side copies, retention over the bucket, and a failed upload failing the job.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

from gateway import outputs_s3, retention
from gateway.__main__ import main
from gateway.api.pages import page_headers
from gateway.api.state import OUTPUTS, REFERENCES, STORE
from gateway.outputs import IMMUTABLE
from gateway.outputs_s3 import S3OutputStore, connect
from gateway.settings import Settings
from gateway.thumbnails import THUMB_SIZE
from tests.conftest import Gateway, running_gateway
from tests.fake_comfy import FakeComfyUI
from tests.helpers import free_port

KEY_ID, SECRET = "test-key-id", "test-secret"
PREFIX = "gw/"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 server, for this module's tests."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_url: str) -> Iterator[Any]:
    client = connect(endpoint_url=s3_url, region="us-east-1", access_key_id=KEY_ID, secret_access_key=SECRET)
    with closing(client):
        yield client


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"results-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_policy(Bucket=name, Policy=public_read(name))  # as the README asks
    return name


def public_read(bucket: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})


@pytest.fixture
def s3_settings(settings: Settings, s3_url: str, bucket: str) -> Settings:
    return replace(settings, s3_bucket=bucket, s3_endpoint_url=s3_url, s3_prefix=PREFIX,
                   s3_access_key_id=KEY_ID, s3_secret_access_key=SECRET)


@pytest.fixture
async def gateway_s3(s3_settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(s3_settings) as gw:
        yield gw


def keys(s3: Any, bucket: str) -> set[str]:
    return {item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])}


async def fetch(url: str) -> tuple[int, bytes, str]:
    """GET a public URL the way a browser would: no key, no signature."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def done_job(gw: Gateway, body: dict[str, Any] | None = None) -> dict[str, Any]:
    [job_id] = await gw.generate("example_01", body or {"width": 64, "height": 64})
    record = await gw.wait(job_id)
    assert record["status"] == "done", record
    return record


async def test_a_job_ends_done_with_its_image_in_the_bucket(gateway_s3: Gateway, s3: Any, bucket: str,
                                                            fake: FakeComfyUI, s3_url: str) -> None:
    record = await done_job(gateway_s3)
    [produced] = [data for (kind, _, _), data in fake.files.items() if kind == "output"]
    relative = record["result"]["relative_path"]
    assert relative.startswith("presets/example_01/gen_") and relative.endswith(".png")
    base = f"{s3_url}/{bucket}/{PREFIX}"
    assert record["result"]["image_url"] == record["images"][0]["image_url"] == base + relative

    stored = s3.get_object(Bucket=bucket, Key=PREFIX + relative)
    assert stored["Body"].read() == produced
    assert (stored["ContentType"], stored["CacheControl"]) == ("image/png", IMMUTABLE)
    assert await fetch(record["result"]["image_url"]) == (200, produced, "image/png")
    assert keys(s3, bucket) == {PREFIX + relative, f"{PREFIX}thumbs/{relative.removesuffix('.png')}.webp"}
    # the gateway serves no result files itself, and keeps none on disk
    assert (await gateway_s3.client.get(f"/static/uploads/{relative}")).status == 404
    assert not (gateway_s3.settings.uploads_dir / relative).exists()


async def test_gallery_thumbnails_are_in_the_bucket_when_the_job_is_done(gateway_s3: Gateway, s3: Any,
                                                                         bucket: str) -> None:
    record = await done_job(gateway_s3, {"width": 512, "height": 384})
    resp = await gateway_s3.client.get("/api/v1/images", headers=gateway_s3.headers)
    [item] = (await resp.json())["images"]
    assert item["image_url"] == record["result"]["image_url"]
    public = gateway_s3.settings.s3_public_base
    assert item["thumb_url"] == f"{public}/{PREFIX}thumbs/{record['result']['relative_path'][:-4]}.webp"
    status, data, kind = await fetch(item["thumb_url"])
    assert (status, kind) == (200, "image/webp")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP" and image.size == (THUMB_SIZE, THUMB_SIZE * 384 // 512)
    head = s3.head_object(Bucket=bucket, Key=item["thumb_url"].removeprefix(f"{public}/"))
    assert head["CacheControl"] == IMMUTABLE


async def test_a_saved_result_is_a_copy_in_the_bucket(gateway_s3: Gateway, s3: Any, bucket: str) -> None:
    record = await done_job(gateway_s3)
    resp = await gateway_s3.client.post("/api/v1/saved", json={"job_id": record["id"], "label": "hero"},
                                        headers=gateway_s3.headers)
    assert resp.status == 201, await resp.text()
    saved = await resp.json()
    public = gateway_s3.settings.s3_public_base
    assert saved["image_url"].startswith(f"{public}/{PREFIX}saved/") and saved["image_url"].endswith(".png")
    original = await fetch(record["result"]["image_url"])
    assert await fetch(saved["image_url"]) == original
    copy = s3.head_object(Bucket=bucket, Key=saved["image_url"].removeprefix(f"{public}/"))
    assert (copy["ContentType"], copy["CacheControl"]) == ("image/png", IMMUTABLE)

    resp = await gateway_s3.client.get("/api/v1/saved", headers=gateway_s3.headers)
    assert [s["image_url"] for s in (await resp.json())["saved"]] == [saved["image_url"]]
    resp = await gateway_s3.client.delete(f"/api/v1/saved/{saved['id']}", headers=gateway_s3.headers)
    assert resp.status == 204
    assert (await fetch(saved["image_url"]))[0] == 404
    assert await fetch(record["result"]["image_url"]) == original  # the result itself stays


async def test_retention_deletes_old_results_and_thumbnails_never_saved_ones(gateway_s3: Gateway, s3: Any,
                                                                             bucket: str) -> None:
    record = await done_job(gateway_s3)
    resp = await gateway_s3.client.post("/api/v1/saved", json={"job_id": record["id"], "label": "keep"},
                                        headers=gateway_s3.headers)
    saved = await resp.json()
    s3.put_object(Bucket=bucket, Key="elsewhere/presets/x.png", Body=b"not the gateway's")
    app = gateway_s3.client.server.app
    relative = record["result"]["relative_path"]
    result_key, thumb_key = PREFIX + relative, f"{PREFIX}thumbs/{relative[:-4]}.webp"

    kept = await retention.sweep(outputs=app[OUTPUTS], references=app[REFERENCES], store=app[STORE],
                                 older_than_days=1, now=time.time())
    assert kept.locations == [] and kept.bytes == 0
    dry = await retention.sweep(outputs=app[OUTPUTS], references=app[REFERENCES], store=app[STORE],
                                older_than_days=1, dry_run=True, now=time.time() + 2 * 86400)
    assert sorted(dry.locations) == [f"s3://{bucket}/{result_key}", f"s3://{bucket}/{thumb_key}"]
    assert {result_key, thumb_key} <= keys(s3, bucket)
    swept = await retention.sweep(outputs=app[OUTPUTS], references=app[REFERENCES], store=app[STORE],
                                  older_than_days=1, now=time.time() + 2 * 86400)
    assert swept == dry
    assert keys(s3, bucket) == {"elsewhere/presets/x.png", PREFIX + saved["image_url"].rsplit(f"/{PREFIX}", 1)[1]}
    assert (await fetch(record["result"]["image_url"]))[0] == 404
    assert (await fetch(saved["image_url"]))[0] == 200
    resp = await gateway_s3.client.post("/api/v1/saved", json={"job_id": record["id"], "label": "too late"},
                                        headers=gateway_s3.headers)
    assert (resp.status, (await resp.json())["error"]["code"]) == (409, "job_not_done")


async def test_a_failed_upload_fails_the_job_with_the_reason(s3_settings: Settings, s3: Any) -> None:
    missing = replace(s3_settings, s3_bucket=f"gone-{uuid.uuid4().hex[:12]}")
    async with running_gateway(missing) as gw:
        [job_id] = await gw.generate("example_01", {"width": 64, "height": 64})
        record = await gw.wait(job_id)
        resp = await gw.client.get("/api/v1/images", headers=gw.headers)
        gallery = await resp.json()
    assert record["status"] == "failed"
    assert record["error"].startswith("could not write the result file: S3 upload failed: ")
    assert "NoSuchBucket" in record["error"]
    assert f"(s3://{missing.s3_bucket}/{PREFIX}presets/example_01/gen_" in record["error"]
    assert (record["result"], record["images"]) == (None, [])
    assert gallery == {"images": [], "total": 0}


async def test_a_file_that_is_no_image_is_uploaded_without_thumbnail(s3: Any, bucket: str) -> None:
    store = S3OutputStore(client=s3, bucket=bucket, public_url="https://cdn.example.com/")
    relative = await store.save("p", b"GIF89a but not really", "odd.GIF")
    assert relative.startswith("presets/p/gen_") and relative.endswith(".gif")
    assert store.thumbnail(relative, b"") is None
    assert store.url(relative) == f"https://cdn.example.com/{relative}"
    assert s3.head_object(Bucket=bucket, Key=relative)["ContentType"] == "image/gif"
    assert keys(s3, bucket) == {relative}
    with pytest.raises(FileNotFoundError):
        await store.keep("presets/p/never_written.png")


async def test_results_are_deleted_in_batches(s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs_s3, "DELETE_BATCH", 2)
    store = S3OutputStore(client=s3, bucket=bucket, public_url="https://cdn.example.com", prefix="a/")
    for name in ("one", "two", "three", "four", "five"):
        s3.put_object(Bucket=bucket, Key=f"a/presets/p/{name}.png", Body=name.encode())
    s3.put_object(Bucket=bucket, Key="a/saved/kept.png", Body=b"kept")
    listed = await store.results()
    assert sorted(f.location for f in listed) == sorted(f"s3://{bucket}/a/presets/p/{n}.png"
                                                        for n in ("one", "two", "three", "four", "five"))
    assert sorted(f.size for f in listed) == [3, 3, 4, 4, 5]
    await store.delete([f.location for f in listed])
    assert keys(s3, bucket) == {"a/saved/kept.png"}


def test_cleanup_command_sweeps_the_bucket(s3_settings: Settings, s3: Any, bucket: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_S3_BUCKET": bucket,
                        "GATEWAY_S3_ENDPOINT_URL": s3_settings.s3_endpoint_url or "", "GATEWAY_S3_PREFIX": PREFIX,
                        "GATEWAY_S3_ACCESS_KEY_ID": KEY_ID, "GATEWAY_S3_SECRET_ACCESS_KEY": SECRET}.items():
        monkeypatch.setenv(name, value)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}presets/p/gen_old.png", Body=b"old")
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}saved/kept.png", Body=b"kept")
    later = time.time() + 10 * 86400  # the objects were written now: ten days on, they are old
    monkeypatch.setattr(retention, "time", SimpleNamespace(time=lambda: later))
    assert main(["cleanup", "--older-than", "7"]) == 0
    out = capsys.readouterr().out
    assert f"removed s3://{bucket}/{PREFIX}presets/p/gen_old.png" in out
    assert "removed 1 file(s), 3 bytes, older than 7 day(s)" in out
    assert keys(s3, bucket) == {f"{PREFIX}saved/kept.png"}


async def test_the_web_page_may_show_images_from_the_bucket(gateway_s3: Gateway, s3_url: str) -> None:
    resp = await gateway_s3.client.get("/")
    assert resp.status == 200
    assert f"img-src 'self' data: blob: {s3_url}; " in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("images_url", "img_src"),
    [
        (None, "img-src 'self' data: blob:;"),
        ("https://images.example.com", "img-src 'self' data: blob: https://images.example.com;"),
        ("http://minio:9000/results", "img-src 'self' data: blob: http://minio:9000;"),
    ],
)
def test_page_headers_allow_the_image_origin(images_url: str | None, img_src: str) -> None:
    assert img_src in page_headers(images_url)["Content-Security-Policy"]
