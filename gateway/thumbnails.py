"""Thumbnails of result images: small WebP pictures for the gallery, made from the image's bytes."""

from __future__ import annotations

import io
import logging

from PIL import Image, UnidentifiedImageError

from gateway.refimages import sniff

log = logging.getLogger(__name__)

THUMB_SIZE = 320
"""Thumbnails fit in a square of this many pixels."""
CONTENT_TYPE = "image/webp"
UNREADABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError)
"""What Pillow raises for bytes it cannot read as an image."""


def readable(data: bytes, name: str) -> bool:
    """Whether Pillow reads `data` as an image. Only the header is read: decoding a large PNG takes
    tens of milliseconds, which a job's result should not wait for."""
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except UNREADABLE as exc:
        log.warning("no thumbnail for %s: %s", name, exc)
        return False


def is_image(data: bytes) -> bool:
    """Whether a file's first bytes are those of a PNG, JPEG, WebP or GIF image: cheaper than
    `readable`, for a store that decodes the image later (on the thumbnail's first request)."""
    return sniff(data) is not None or data[:6] in (b"GIF87a", b"GIF89a")


def thumbnail(data: bytes) -> bytes:
    """The image in `data` as a WebP fitting in THUMB_SIZE x THUMB_SIZE; raises one of UNREADABLE."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.thumbnail((THUMB_SIZE, THUMB_SIZE))
        image: Image.Image = opened
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()
