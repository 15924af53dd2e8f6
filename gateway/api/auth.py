"""API key checks for `/api/` routes: `X-API-Key` header or `?api_key=` query."""

from __future__ import annotations

import time

from aiohttp import web

from gateway import keys
from gateway.errors import InvalidApiKey, MissingApiKey
from gateway.storage import ApiKeyRow, Store

HEADER = "X-API-Key"
QUERY = "api_key"


class KeyRing:
    """The accepted keys: the stored ones (digests, re-read at most every `ttl` seconds, so a
    key revoked from the command line stops working within that time) plus one from settings.
    """

    def __init__(self, *, store: Store, extra_key: str | None = None, ttl: float = 2.0) -> None:
        self._store = store
        self._extra = [keys.digest(extra_key)] if extra_key else []
        self._ttl = ttl
        self._digests: list[str] = []
        self._loaded_at = float("-inf")

    async def check(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._loaded_at > self._ttl:
            self._digests = await self._store.active_key_hashes() + self._extra
            self._loaded_at = now
        return keys.matches(key, self._digests)


def presented_key(request: web.Request) -> str | None:
    return request.headers.get(HEADER) or request.query.get(QUERY) or None


async def authenticate(request: web.Request, keyring: KeyRing) -> None:
    """Raise MissingApiKey (401) or InvalidApiKey (403) unless the request carries a valid key."""
    key = presented_key(request)
    if key is None:
        raise MissingApiKey(f"an API key is required: send it in the {HEADER} header or the ?{QUERY}= query")
    if not await keyring.check(key):
        raise InvalidApiKey("the API key is not valid")


async def create_key(store: Store, name: str) -> tuple[ApiKeyRow, str]:
    """Make and store a new key; returns its row and the key itself (shown once, never stored)."""
    key = keys.new_key()
    row = ApiKeyRow(id=keys.new_key_id(), name=name, hash=keys.digest(key), created_at=time.time(), revoked_at=None)
    await store.add_key(row)
    return row, key
