"""API keys: made with 256 bits of randomness, stored only as SHA-256 digests. Pure: no I/O.

A fast hash is right here (unlike passwords): a key cannot be guessed, so there is nothing for a
slow hash to protect, and every request pays for the check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

KEY_PREFIX = "cgw_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return secrets.token_hex(4)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def matches(key: str, digests: Iterable[str]) -> bool:
    """Whether `key` is one of the keys behind `digests`, compared in constant time."""
    return find(key, digests) is not None


def find(key: str, digests: Iterable[str]) -> str | None:
    """The digest of `digests` that `key` matches, if any, compared in constant time.

    Every digest is compared (no early exit), so timing says nothing about which one matched.
    """
    candidate = digest(key).encode()
    found = None
    for known in digests:
        if hmac.compare_digest(candidate, known.encode()):
            found = known
    return found
