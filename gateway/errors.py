"""Every error the gateway raises on purpose, with the HTTP status and code it shows.

    GatewayError                      500 internal_error
    ├── InvalidRequest                400 invalid_request     (a body or query that cannot be used)
    │   ├── InvalidParameter          400 invalid_parameter   (one field is wrong; names it)
    │   └── UnsupportedParameter      400 unsupported_parameter (the preset has no such parameter)
    ├── AuthError
    │   ├── MissingApiKey             401 missing_api_key
    │   └── InvalidApiKey             403 invalid_api_key
    ├── PriorityNotAllowed            403 priority_not_allowed (above the API key's maximum; names the field)
    ├── NotFound                      404 not_found
    │   ├── PresetNotFound            404 preset_not_found
    │   ├── JobNotFound               404 job_not_found
    │   └── SavedNotFound             404 saved_not_found
    ├── MethodNotAllowed              405 method_not_allowed
    ├── PresetExists                  409 preset_exists       (a new preset's slug is taken)
    ├── Conflict                      409 conflict
    │   ├── IdempotencyKeyMismatch    409 idempotency_key_mismatch (a key reused with another body)
    │   └── JobNotDone                409 job_not_done        (saving a job that has no result yet)
    ├── PayloadTooLarge               413 payload_too_large
    ├── QueueFull                     429 queue_full          (backpressure; carries Retry-After)
    ├── ConfigError                   500 config_error        (presets.yaml, workflows, settings)
    ├── StoreUnavailable              503 store_unavailable   (the database cannot be written)
    └── ComfyError                    502 comfyui_error       (talking to ComfyUI)
        ├── ComfyUnavailable          503 comfyui_unavailable (connection refused, timeout, 5xx)
        └── ComfyRejected             502 comfyui_rejected    (ComfyUI answered 400 to a prompt)

Handlers raise these; one middleware renders them as `{"error": {"code", "message", ...}}`.
Foreign exceptions are converted where they enter (`raise Ours(...) from exc`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of the tree. `status` and `code` are what the API shows for it."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the error response."""
        return {}

    def to_body(self) -> dict[str, Any]:
        """The JSON body the API answers with."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class InvalidRequest(GatewayError):
    status = 400
    code = "invalid_request"


class InvalidParameter(InvalidRequest):
    code = "invalid_parameter"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class UnsupportedParameter(InvalidParameter):
    code = "unsupported_parameter"


class AuthError(GatewayError):
    status = 401
    code = "unauthorized"


class MissingApiKey(AuthError):
    status = 401
    code = "missing_api_key"


class InvalidApiKey(AuthError):
    status = 403
    code = "invalid_api_key"


class PriorityNotAllowed(GatewayError):
    """A valid priority that the request's API key may not ask for."""

    status = 403
    code = "priority_not_allowed"

    def __init__(self, message: str, *, maximum: int) -> None:
        super().__init__(message, field="priority", maximum=maximum)


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class PresetNotFound(NotFound):
    code = "preset_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class SavedNotFound(NotFound):
    code = "saved_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"


class PresetExists(GatewayError):
    status = 409
    code = "preset_exists"
class Conflict(GatewayError):
    status = 409
    code = "conflict"


class IdempotencyKeyMismatch(Conflict):
    code = "idempotency_key_mismatch"


class JobNotDone(Conflict):
    code = "job_not_done"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class QueueFull(GatewayError):
    status = 429
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ConfigError(GatewayError):
    code = "config_error"


class StoreUnavailable(GatewayError):
    status = 503
    code = "store_unavailable"


class ComfyError(GatewayError):
    status = 502
    code = "comfyui_error"


class ComfyUnavailable(ComfyError):
    """ComfyUI could not be reached or answered with a server error; worth trying again later."""

    status = 503
    code = "comfyui_unavailable"


class ComfyRejected(ComfyError):
    """ComfyUI refused a prompt (HTTP 400). `message` is written for a person."""

    code = "comfyui_rejected"
