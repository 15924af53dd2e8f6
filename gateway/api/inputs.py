"""The parts of a generate request that need more than the body model: reference images
(decoded, checked by content, stored) and the webhook target (checked against SSRF)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import refimages
from gateway.api.state import REFERENCES, SETTINGS
from gateway.compiler import reference_params
from gateway.errors import InvalidParameter
from gateway.models import GenerateRequest, Preset
from gateway.webhooks import UnsafeTarget, check_url

MAX_GENERATE_BODY = 128 * 1024 * 1024
"""Body limit of `POST /generate`: six 15 MB reference images in base64 fit."""


def _decode_all(items: list[str]) -> list[refimages.ReferenceImage]:
    images = []
    for index, item in enumerate(items):
        try:
            images.append(refimages.decode(item))
        except ValueError as exc:
            field = f"reference_images.{index}"
            raise InvalidParameter(field, f"{field}: item {index + 1} {exc}") from None
    return images


async def store_references(request: web.Request, preset: Preset, body: GenerateRequest) -> list[str]:
    """Check and store the request's reference images; their stored names, in order."""
    if not body.reference_images:
        return []
    reference_params(preset, len(body.reference_images))  # a preset without image inputs: 400 first
    images = await asyncio.to_thread(_decode_all, body.reference_images)
    for image in images:
        await request.app[REFERENCES].save(image.name, image.data)
    return [image.name for image in images]


def webhook_target(request: web.Request, body: GenerateRequest) -> str | None:
    """The URL this request's job events go to (the request's, else the configured default)."""
    settings = request.app[SETTINGS]
    url = body.webhook_url or settings.webhook_url
    if url is None:
        return None
    try:
        check_url(url, allow_private=settings.webhook_allow_private)
    except UnsafeTarget as exc:
        raise InvalidParameter("webhook_url", f"webhook_url: {exc}") from None
    return url
