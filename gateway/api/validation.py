"""Request bodies in, pydantic models out; every refusal names the field at fault."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from gateway.errors import InvalidParameter, InvalidRequest, PayloadTooLarge

M = TypeVar("M", bound=pydantic.BaseModel)

_MESSAGES = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "extra_forbidden": "is not a known field",
    "string_pattern_mismatch": "must match {pattern}",
    "dict_type": "must be an object",
    "float_type": "must be a number",
    "greater_than": "must be greater than {gt}",
    "list_type": "must be a list",
    "too_long": "must have at most {max_length} items",
    "model_type": "must be an object",
    "missing": "is required",
}


async def read_json_object(request: web.Request, *, max_size: int | None = None) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`. `max_size` raises the app's body limit."""
    if max_size is None:
        raw = await request.read()
    else:
        try:
            raw = await request.clone(client_max_size=max_size).read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLarge(f"the request body is larger than the limit of {max_size} bytes") from None
    if not raw.strip():
        return {}
    content_type = request.content_type
    if content_type not in ("application/json", "application/octet-stream") and not content_type.endswith("+json"):
        raise InvalidRequest(f"the body must be JSON sent with Content-Type: application/json (got {content_type})")
    try:
        body = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse `{"width": 512, "width": 8}`: parsers disagree on which one wins."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidParameter(key, f"{key}: given more than once")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate `data`; the first problem becomes an InvalidParameter naming its field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _to_error(exc, list(model.model_fields)) from None


def _to_error(exc: pydantic.ValidationError, fields: list[str]) -> InvalidParameter:
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "value_error":
        text = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
        if loc:
            return InvalidParameter(loc, f"{loc}: {text}")
        field, _, reason = text.partition(": ")  # model validators say "<field>: <reason>"
        return InvalidParameter(field, f"{field}: {reason}" if reason else text)
    kind = first["type"]
    if kind == "too_long" and isinstance(first.get("input"), str):  # max_length on an optional string
        kind = "string_too_long"
    template = _MESSAGES.get(kind)
    reason = template.format(**first.get("ctx", {})) if template else first["msg"].lower()
    if first["type"] == "extra_forbidden":
        known = ", ".join(fields)
        return InvalidParameter(loc, f"{loc}: {reason} (known fields: {known})")
    return InvalidParameter(loc, f"{loc}: {reason}")



_TRUE, _FALSE = {"1", "true", "yes", "on", ""}, {"0", "false", "no", "off"}


def query_flag(request: web.Request, name: str) -> bool:
    """A yes/no query parameter: absent is no; `?name`, `1`, `true`, `yes` are yes."""
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in _TRUE | _FALSE:
        raise InvalidParameter(name, f"{name}: must be 1 or 0 (true or false)")
    return value in _TRUE


def query_int(request: web.Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within [minimum, maximum]."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(name, f"{name}: must be an integer") from None
    if not minimum <= value <= maximum:
        raise InvalidParameter(name, f"{name}: must be between {minimum} and {maximum}")
    return value
