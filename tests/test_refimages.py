from __future__ import annotations

import base64

import pytest

from gateway.refimages import MAX_BYTES, decode, sniff
from tests.images import b64, data_url, image_bytes

PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")
WEBP = image_bytes("WEBP")


@pytest.mark.parametrize(
    ("item", "extension"),
    [
        (b64(PNG), "png"),
        (b64(JPEG), "jpg"),
        (b64(WEBP), "webp"),
        (data_url(PNG), "png"),
        (data_url(JPEG, "image/png"), "jpg"),  # the claimed type is not trusted
        (data_url(WEBP, "IMAGE/WEBP").replace("base64", "BASE64"), "webp"),
        ("  " + b64(PNG)[:40] + "\n" + b64(PNG)[40:] + "\n", "png"),  # wrapped base64
    ],
)
def test_accepts(item: str, extension: str) -> None:
    image = decode(item)
    assert image.extension == extension
    assert image.name.startswith("gw_") and image.name.endswith("." + extension)
    assert decode(item).name == image.name  # content-addressed


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("", "is empty"),
        ("data:image/png;base64,", "is empty"),
        ("data:image/png,rawtext", "must be base64-encoded"),
        ("not base64 at all!", "not valid base64"),
        (b64(b"GIF89a" + b"\0" * 40), "not a JPEG, PNG or WebP"),
        (b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "not a JPEG, PNG or WebP"),
        (b64(PNG[: len(PNG) // 2]), "cannot be decoded as PNG"),
        (b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 64), "cannot be decoded as PNG"),
        (b64(JPEG[:30]), "cannot be decoded as JPG"),
        (b64(b"\0" * (MAX_BYTES + 1)), "larger than 15 MB"),
        ("A" * ((MAX_BYTES // 3 + 10) * 4), "larger than 15 MB"),
    ],
)
def test_refuses_with_a_reason(item: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode(item)


def test_refuses_a_decompression_bomb() -> None:
    bomb = image_bytes("PNG", size=(9000, 9000), colour=(0, 0, 0))  # small file, 81 megapixels
    assert len(bomb) < MAX_BYTES
    with pytest.raises(ValueError, match="pixels"):
        decode(base64.b64encode(bomb).decode())


@pytest.mark.parametrize(("data", "kind"), [(PNG, "png"), (JPEG, "jpg"), (WEBP, "webp"), (b"RIFF0000WAVE", None),
                                            (b"", None)])
def test_sniff(data: bytes, kind: str | None) -> None:
    assert sniff(data) == kind
