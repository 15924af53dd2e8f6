"""API key checks for `/api/` routes: `X-API-Key` header or `?api_key=` query."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from gateway import keys
from gateway.errors import InvalidApiKey, MissingApiKey
from gateway.storage import ApiKeyRow, Store

HEADER = "X-API-Key"
QUERY = "api_key"


@dataclass(frozen=True)
class Grant:
    """What the key a request came with allows."""

    max_priority: int


GRANT = web.RequestKey("grant", Grant)
"""Set on every authenticated request."""


class KeyRing:
    """The accepted keys: the stored ones (digests, re-read at most every `ttl` seconds, so a
    key revoked from the command line stops working within that time) plus one from settings.
    A key without a maximum priority of its own gets `max_priority`.
    """

    def __init__(self, *, store: Store, extra_key: str | None = None, ttl: float = 2.0,
                 max_priority: int = 0) -> None:
        self._store = store
        self._extra: dict[str, int | None] = {keys.digest(extra_key): None} if extra_key else {}
        self._ttl = ttl
        self._max_priority = max_priority
        self._digests: dict[str, int | None] = {}
        self._loaded_at = float("-inf")

    async def grant(self, key: str) -> Grant | None:
        """What `key` allows; None if it is not a valid key."""
        now = time.monotonic()
        if now - self._loaded_at > self._ttl:
            self._digests = await self._store.active_keys() | self._extra
            self._loaded_at = now
        found = keys.find(key, self._digests)
        if found is None:
            return None
        own = self._digests[found]
        return Grant(max_priority=self._max_priority if own is None else own)


def presented_key(request: web.Request) -> str | None:
    return request.headers.get(HEADER) or request.query.get(QUERY) or None


async def authenticate(request: web.Request, keyring: KeyRing) -> None:
    """Raise MissingApiKey (401) or InvalidApiKey (403) unless the request carries a valid key."""
    key = presented_key(request)
    if key is None:
        raise MissingApiKey(f"an API key is required: send it in the {HEADER} header or the ?{QUERY}= query")
    grant = await keyring.grant(key)
    if grant is None:
        raise InvalidApiKey("the API key is not valid")
    request[GRANT] = grant


async def create_key(store: Store, name: str, *, max_priority: int | None = None) -> tuple[ApiKeyRow, str]:
    """Make and store a new key; returns its row and the key itself (shown once, never stored)."""
    key = keys.new_key()
    row = ApiKeyRow(id=keys.new_key_id(), name=name, hash=keys.digest(key), created_at=time.time(), revoked_at=None,
                    max_priority=max_priority)
    await store.add_key(row)
    return row, key
