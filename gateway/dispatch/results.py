"""A finished prompt's images: downloaded from ComfyUI and written under the uploads folder."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.comfy import protocol
from gateway.comfy.client import ComfyClient
from gateway.jobs import StoredImage
from gateway.outputs import OutputStore


async def store_results(client: ComfyClient, outputs: OutputStore, slug: str,
                        images: Sequence[protocol.OutputImage]) -> tuple[StoredImage, ...]:
    """Download each image and write it to disk (flushed: durable before the job can read done).

    Raises ComfyUnavailable (a download failed) or OSError (a file could not be written).
    """
    stored = []
    for image in images:
        data = await client.view(image)
        relative = await outputs.save(slug, data, image.filename)
        thumb = outputs.thumbnail(relative, data)
        stored.append(StoredImage(relative_path=relative, node_id=image.node_id, thumb_path=thumb))
    return tuple(stored)
