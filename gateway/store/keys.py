"""API keys on SQLite: stored by digest, revoked by id or name."""

from __future__ import annotations

from gateway.storage import ApiKeyRow
from gateway.store.base import Connected


class Keys(Connected):
    async def add_key(self, row: ApiKeyRow) -> None:
        async with self._write() as w:
            await w.db.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, revoked_at, max_priority) VALUES (?, ?, ?, ?, ?, ?)",
                (row.id, row.name, row.hash, row.created_at, row.revoked_at, row.max_priority),
            )

    async def list_keys(self) -> list[ApiKeyRow]:
        rows = await self._rows(
            "SELECT id, name, hash, created_at, revoked_at, max_priority FROM api_keys ORDER BY created_at")
        return [ApiKeyRow(*r) for r in rows]

    async def revoke_key(self, id_or_name: str, at: float) -> int:
        """Revoke keys by id or name; returns how many were revoked."""
        async with self._write() as w:
            cur = await w.db.execute(
                "UPDATE api_keys SET revoked_at=? WHERE (id=? OR name=?) AND revoked_at IS NULL",
                (at, id_or_name, id_or_name),
            )
        return cur.rowcount

    async def active_keys(self) -> dict[str, int | None]:
        """Digests of the keys not revoked, each with its maximum priority (None: the default)."""
        rows = await self._rows("SELECT hash, max_priority FROM api_keys WHERE revoked_at IS NULL")
        return {str(r[0]): r[1] for r in rows}
