"""Result files in a folder, and their thumbnails: made on the first request, then kept on disk."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from PIL import Image

from gateway.atomic import write_new
from gateway.outputs import thumb_name
from gateway.outputs_local import LocalOutputStore
from gateway.thumbnails import THUMB_SIZE, is_image
from tests.images import image_bytes


@pytest.mark.parametrize(("data", "expected"), [
    (image_bytes("PNG"), True),
    (image_bytes("JPEG"), True),
    (image_bytes("WEBP"), True),
    (image_bytes("GIF"), True),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", False),
    (b'{"not": "an image"}', False),
    (b"", False),
])
def test_is_image(data: bytes, expected: bool) -> None:
    assert is_image(data) is expected


@pytest.mark.parametrize(("relative", "thumb"), [
    ("presets/sd15/gen_1_ab.png", "presets/sd15/gen_1_ab.webp"),
    ("presets/sd15/gen_1_ab.jpg", "presets/sd15/gen_1_ab.webp"),
    ("presets/sd15/gen_1_ab.webp", "presets/sd15/gen_1_ab.webp"),
])
def test_thumb_name(relative: str, thumb: str) -> None:
    assert thumb_name(relative) == thumb


async def test_a_thumbnail_is_made_on_its_first_request_then_served_from_disk(tmp_path: Path) -> None:
    outputs = LocalOutputStore(tmp_path / "uploads", thumbs=tmp_path / "thumbs")
    data = image_bytes("PNG", size=(640, 480))
    relative = await outputs.save("example_01", data, "ComfyUI_00001_.png")
    thumb = outputs.thumbnail(relative, data)
    assert thumb == thumb_name(relative)
    assert not (tmp_path / "thumbs" / thumb).exists()  # nothing made while the job finishes

    await outputs.thumbnail_ready(thumb)
    made = tmp_path / "thumbs" / thumb
    with Image.open(made) as image:
        assert image.format == "WEBP" and image.size == (THUMB_SIZE, THUMB_SIZE * 480 // 640)

    before = made.stat()
    outputs.path(relative).unlink()  # the result is gone: the thumbnail is not made again
    await outputs.thumbnail_ready(thumb)
    assert made.stat().st_mtime_ns == before.st_mtime_ns and made.stat().st_ino == before.st_ino


async def test_concurrent_first_requests_make_one_thumbnail(tmp_path: Path) -> None:
    outputs = LocalOutputStore(tmp_path / "uploads", thumbs=tmp_path / "thumbs")
    data = image_bytes("JPEG", size=(400, 400))
    thumb = outputs.thumbnail(await outputs.save("example_01", data, "x.jpg"), data)
    assert thumb is not None
    await asyncio.gather(*(outputs.thumbnail_ready(thumb) for _ in range(5)))
    assert [p.name for p in (tmp_path / "thumbs" / thumb).parent.iterdir()] == [Path(thumb).name]


async def test_a_result_that_is_not_an_image_gets_no_thumbnail(tmp_path: Path) -> None:
    outputs = LocalOutputStore(tmp_path / "uploads", thumbs=tmp_path / "thumbs")
    data = b'{"a": "text output"}'
    relative = await outputs.save("example_01", data, "result.png")
    assert outputs.thumbnail(relative, data) is None


@pytest.mark.parametrize("thumb", [
    "../uploads/presets/example_01/gen.webp", "presets/../../x.webp", "saved/abc.webp",
    "presets/example_01/.gen.webp", "presets/example_01/gen.png", "/etc/passwd.webp", "presets",
])
async def test_a_thumbnail_path_that_names_no_result_makes_nothing(tmp_path: Path, thumb: str) -> None:
    outputs = LocalOutputStore(tmp_path / "uploads", thumbs=tmp_path / "thumbs")
    await outputs.thumbnail_ready(thumb)
    assert not (tmp_path / "thumbs").exists()


async def test_a_corrupt_result_leaves_the_thumbnail_absent(tmp_path: Path) -> None:
    outputs = LocalOutputStore(tmp_path / "uploads", thumbs=tmp_path / "thumbs")
    data = image_bytes("PNG")[:40]  # the header of a PNG, then nothing
    thumb = outputs.thumbnail(await outputs.save("example_01", data, "x.png"), data)
    assert thumb is not None
    await outputs.thumbnail_ready(thumb)
    assert not (tmp_path / "thumbs" / thumb).exists()


def test_write_new_creates_the_file_and_its_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "gen.png"
    write_new(target, b"x" * 100_000)
    assert target.read_bytes() == b"x" * 100_000
    assert os.listdir(target.parent) == ["gen.png"]  # no temporary name left behind


def test_write_new_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "gen.png"
    target.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_new(target, b"second")
    assert target.read_bytes() == b"first"
