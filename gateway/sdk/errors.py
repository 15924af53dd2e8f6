"""What the client raises.

    ClientError                 anything the client could not do
    ├── ApiError                the gateway answered with an error: status, code, message, field
    ├── GatewayUnreachable      no answer: connection refused, DNS, timeout, connection lost
    └── StreamLost              an event stream kept closing before the job ended

httpx's exceptions are converted where they enter (`raise GatewayUnreachable(...) from exc`), so a
caller catches `ClientError` alone.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of everything the client raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(ClientError):
    """An error answer of the gateway, `{"error": {"code", "message", "field"?}}` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class GatewayUnreachable(ClientError):
    """The gateway did not answer (connection refused, name not found, timeout, connection cut)."""


class StreamLost(ClientError):
    """A job's event stream closed again and again before the job ended."""
