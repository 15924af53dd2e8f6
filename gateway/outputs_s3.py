"""Result images in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, ...), served from there
or from a CDN in front of it: the gateway only writes, copies, lists and deletes objects.

Object keys are the store's relative names under an optional prefix: `<prefix>presets/...` for
results, `<prefix>saved/...` for saved copies and `<prefix>thumbs/presets/....webp` for thumbnails.
boto3 is synchronous, so every call runs in a worker thread; one client serves them all.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway import thumbnails
from gateway.outputs import IMMUTABLE, RESULTS_FOLDER, StoredFile, content_type, result_name, saved_name, thumb_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

THUMBS_FOLDER = "thumbs"
DELETE_BATCH = 1000
"""Most keys one DeleteObjects request takes."""
_FAILED = (BotoCoreError, ClientError)
_MISSING = {"NoSuchKey", "404", "NotFound"}


def connect(*, endpoint_url: str | None, region: str, access_key_id: str | None = None,
            secret_access_key: str | None = None) -> S3Client:
    """A boto3 S3 client. Without keys it finds credentials the standard AWS way (`AWS_ACCESS_KEY_ID`
    and `AWS_SECRET_ACCESS_KEY`, shared credential files, an instance or task role)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5, read_timeout=30,
        s3={"addressing_style": "path" if endpoint_url else "auto"},  # MinIO and friends answer path-style
        # checksums only where S3 requires them: several S3-compatible stores refuse the newer defaults
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key, config=config)


class S3OutputStore:
    """An `OutputStore` in one bucket. Image URLs are `public_url` + `/` + the object's key."""

    def __init__(self, *, client: S3Client, bucket: str, public_url: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.public_url = public_url.rstrip("/")
        self._thumbs: dict[str, str] = {}
        """Thumbnails uploaded with their results by `save`, until `thumbnail` asks for them."""

    def key(self, relative_path: str) -> str:
        return self.prefix + relative_path

    def thumb_key(self, thumb_path: str) -> str:
        return f"{self.prefix}{THUMBS_FOLDER}/{thumb_path}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def url(self, relative_path: str) -> str:
        return f"{self.public_url}/{quote(self.key(relative_path))}"

    def thumb_url(self, thumb_path: str) -> str:
        return f"{self.public_url}/{quote(self.thumb_key(thumb_path))}"

    async def save(self, slug: str, data: bytes, source_name: str) -> str:
        """Upload one result, and its thumbnail once the result is in, so that both URLs work when
        the job is done. The thumbnail is made while the result uploads; a thumbnail that cannot be
        made or uploaded is only logged. Raises OSError, with nothing uploaded, when the result
        upload fails."""
        relative = result_name(slug, source_name)
        making = asyncio.create_task(asyncio.to_thread(_thumbnail_or_none, data, relative))
        try:
            await self._put(self.key(relative), data, content_type(relative))
        except BaseException:
            making.cancel()
            raise
        encoded = await making
        if encoded is not None:
            thumb = thumb_name(relative)
            try:
                await self._put(self.thumb_key(thumb), encoded, thumbnails.CONTENT_TYPE)
            except OSError as exc:
                log.warning("no thumbnail for %s: %s", relative, exc)
            else:
                self._thumbs[relative] = thumb
        return relative

    def thumbnail(self, relative_path: str, data: bytes) -> str | None:
        """The thumbnail `save` uploaded with the result, if it could."""
        return self._thumbs.pop(relative_path, None)

    async def close(self) -> None:
        """Nothing runs in the background: `save` finishes each upload."""

    async def keep(self, relative_path: str) -> str:
        """A copy made by the bucket itself (no download), under `saved/`."""
        relative = saved_name(relative_path)
        source = self.key(relative_path)
        try:
            await asyncio.to_thread(self._client.copy_object, Bucket=self.bucket, Key=self.key(relative),
                                    CopySource={"Bucket": self.bucket, "Key": source}, MetadataDirective="COPY")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise FileNotFoundError(errno.ENOENT, "no such object", self.location(source)) from exc
            raise self._failed("copy", source, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("copy", source, exc) from exc
        return relative

    async def remove(self, relative_path: str) -> None:
        key = self.key(relative_path)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=key)
        except _FAILED as exc:
            raise self._failed("delete", key, exc) from exc

    async def results(self) -> list[StoredFile]:
        """Every object under the results' and their thumbnails' prefixes (listed 1,000 a page)."""
        prefixes = [self.key(f"{RESULTS_FOLDER}/"), self.thumb_key(f"{RESULTS_FOLDER}/")]
        try:
            return await asyncio.to_thread(self._list, prefixes)
        except _FAILED as exc:
            raise self._failed("listing", prefixes[0], exc) from exc

    def _list(self, prefixes: list[str]) -> list[StoredFile]:
        found = []
        pages = self._client.get_paginator("list_objects_v2")
        for prefix in prefixes:
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                found += [StoredFile(self.location(item["Key"]), item["LastModified"].timestamp(), item["Size"])
                          for item in page.get("Contents", [])]
        return found

    async def delete(self, locations: Sequence[str]) -> None:
        """Delete objects `results` listed, up to 1,000 a request."""
        base = self.location("")
        keys = [location.removeprefix(base) for location in locations if location.startswith(base)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            try:
                answer = await asyncio.to_thread(
                    self._client.delete_objects, Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            except _FAILED as exc:
                raise self._failed("delete", batch[0], exc) from exc
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(errno.EIO, f"S3 delete failed for {len(answer['Errors'])} object(s): "
                                         f"{first.get('Code')} {first.get('Message')}",
                              self.location(first.get("Key", "")))

    async def _put(self, key: str, data: bytes, kind: str) -> None:
        try:
            await asyncio.to_thread(self._client.put_object, Bucket=self.bucket, Key=key, Body=data,
                                    ContentType=kind, CacheControl=IMMUTABLE)
        except _FAILED as exc:
            raise self._failed("upload", key, exc) from exc

    def _failed(self, action: str, key: str, exc: Exception) -> OSError:
        """S3's error as the OSError a file system would raise: the dispatcher fails the job with it."""
        return OSError(errno.EIO, f"S3 {action} failed: {exc}", self.location(key))


def _thumbnail_or_none(data: bytes, name: str) -> bytes | None:
    try:
        return thumbnails.thumbnail(data)
    except thumbnails.UNREADABLE as exc:
        log.warning("no thumbnail for %s: %s", name, exc)
        return None
