"""`Idempotency-Key` on `POST /api/v1/generate/<slug>`: a retried request gets the first answer.

A key is scoped to the API key that sent it (by the API key's digest, never the key itself) and
remembered with a hash of the request as the gateway understood it (preset slug and the parsed
body, so formatting and field order do not matter). The store writes the key in the same
transaction as the jobs, so of two concurrent requests with one key exactly one creates jobs; the
other gets its answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

from aiohttp import web

from gateway import keys
from gateway.api.auth import presented_key
from gateway.errors import IdempotencyKeyMismatch, InvalidParameter
from gateway.models import GenerateRequest
from gateway.store import IdempotencyRow

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def key_of(request: web.Request) -> str | None:
    """The request's idempotency key, or None; raises InvalidParameter naming the header."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameter(HEADER, f"{HEADER}: send the header once")
    if not _KEY.match(values[0]):
        raise InvalidParameter(
            HEADER, f"{HEADER}: must be 1 to {MAX_KEY_CHARS} printable ASCII characters without spaces"
        )
    return values[0]


def request_hash(slug: str, body: GenerateRequest) -> str:
    canonical = json.dumps({"slug": slug, "body": body.model_dump(mode="json")}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_row(request: web.Request, key: str, request_hash: str, status: int, body: str) -> IdempotencyRow:
    scope = keys.digest(presented_key(request) or "")
    return IdempotencyRow(scope=scope, key=key, request_hash=request_hash, status=status, body=body,
                          created_at=time.time())


def replay(stored: IdempotencyRow, request_hash: str) -> web.Response:
    """The first answer again, or IdempotencyKeyMismatch when the request differs."""
    if stored.request_hash != request_hash:
        raise IdempotencyKeyMismatch(
            f"{HEADER} {stored.key!r} was used with a different request; use a new key for a new request",
            field=HEADER,
        )
    return web.Response(text=stored.body, status=stored.status, content_type="application/json",
                        headers={REPLAYED_HEADER: "true"})
