"""Reference images sent in a request: decode, recognise by content, verify. Pure: no I/O.

An item is a data URL (`data:image/png;base64,...`) or raw base64. Its type is read from the
bytes themselves (the claimed type of a data URL is not trusted), and the image is decoded far
enough to know it is whole and not a decompression bomb before ComfyUI ever sees it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image

MAX_BYTES = 15 * 1024 * 1024
MAX_PIXELS = 64 * 1024 * 1024
_DATA_URL = re.compile(r"data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class ReferenceImage:
    data: bytes
    extension: str
    """jpg, png or webp: what the content is."""

    @property
    def name(self) -> str:
        """A content-addressed file name: equal bytes, equal name."""
        return f"gw_{hashlib.sha256(self.data).hexdigest()[:40]}.{self.extension}"


def sniff(data: bytes) -> str | None:
    """jpg, png or webp from the magic bytes, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode(item: str) -> ReferenceImage:
    """One request item to an image. Raises ValueError saying what is wrong with it."""
    text = item.strip()
    match = _DATA_URL.match(text)
    if match:
        if ";base64" not in match.group(2).lower():
            raise ValueError("a data URL must be base64-encoded (data:image/...;base64,...)")
        text = text[match.end():]
    if not text:
        raise ValueError("is empty")
    if len(text) > (MAX_BYTES + 2) // 3 * 4 + 4:
        raise ValueError(f"is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"is larger than {MAX_BYTES // (1024 * 1024)} MB ({len(data)} bytes)")
    extension = sniff(data)
    if extension is None:
        raise ValueError("is not a JPEG, PNG or WebP image (checked by content)")
    _verify(data, extension)
    return ReferenceImage(data=data, extension=extension)


def _verify(data: bytes, extension: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if _FORMATS.get(image.format or "") != extension:
                    raise ValueError(f"content is {image.format}, not a JPEG, PNG or WebP image")
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ValueError(f"is {width}x{height} pixels; at most {MAX_PIXELS} pixels are accepted")
                image.load()
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("has too many pixels") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"cannot be decoded as {extension.upper()}: {exc}") from None
