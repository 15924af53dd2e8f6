"""Talk to one ComfyUI server over HTTP and its websocket.

Every foreign failure (connection refused, timeout, 5xx) becomes `ComfyUnavailable`; a 400 to a
prompt becomes `ComfyRejected` with a person-readable reason. `events()` yields parsed websocket
events for as long as it is iterated, reconnecting with backoff, and marks each (re)connection
with `Connected` so the caller can settle what it may have missed.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.comfy import protocol
from gateway.errors import ComfyRejected, ComfyUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connected:
    """The websocket is (again) connected; events before this one may have been missed."""


@dataclass(frozen=True)
class Disconnected:
    reason: str


StreamEvent = protocol.WsEvent | Connected | Disconnected


class ComfyClient:
    """One ComfyUI server. `client_id` names this gateway's websocket; prompts carry it."""

    def __init__(
        self, *, base_url: str, session: aiohttp.ClientSession, client_id: str,
        request_timeout: float = 30.0, heartbeat: float = 10.0,
        backoff: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._heartbeat = heartbeat
        self._backoff = backoff

    async def _request(self, method: str, path: str, *, json_body: Any = None,
                       params: dict[str, str] | None = None,
                       form: aiohttp.FormData | None = None) -> tuple[int, Any, bytes]:
        url = self.base_url + path
        try:
            async with self._session.request(method, url, json=json_body, params=params, data=form,
                                             timeout=self._timeout) as resp:
                raw = await resp.read()
                status = resp.status
                is_json = resp.content_type == "application/json"
        except aiohttp.ClientConnectorError as exc:
            raise ComfyUnavailable(f"ComfyUI at {self.base_url} is unreachable: {exc.os_error}", sent=False) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ComfyUnavailable(f"ComfyUI at {self.base_url} did not answer {method} {path}: {exc!r}",
                                   sent=True) from exc
        if status >= 500:
            raise ComfyUnavailable(f"ComfyUI answered {status} to {method} {path}", sent=True)
        body: Any = None
        if is_json and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        return status, body, raw

    async def submit(self, prompt: dict[str, Any], *, prompt_id: str,
                     extra_data: dict[str, Any] | None = None) -> None:
        """Queue a prompt under our id and websocket client id."""
        payload: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        if extra_data:
            payload["extra_data"] = extra_data
        status, body, _ = await self._request("POST", "/prompt", json_body=payload)
        if status == 400:
            raise ComfyRejected(protocol.rejection_message(body))
        if status != 200:
            raise ComfyUnavailable(f"ComfyUI answered {status} to POST /prompt", sent=True)

    async def history(self, prompt_id: str) -> protocol.HistoryEntry | None:
        status, body, _ = await self._request("GET", f"/history/{prompt_id}")
        if status != 200:
            raise ComfyUnavailable(f"ComfyUI answered {status} to GET /history/{prompt_id}", sent=True)
        return protocol.parse_history(prompt_id, body)

    async def queue(self) -> tuple[set[str], set[str]]:
        """(running, pending) prompt ids in ComfyUI's queue."""
        status, body, _ = await self._request("GET", "/queue")
        if status != 200:
            raise ComfyUnavailable(f"ComfyUI answered {status} to GET /queue", sent=True)
        return protocol.queue_ids(body)

    async def view(self, image: protocol.OutputImage) -> bytes:
        """Download an output file. Raises ComfyUnavailable if it cannot be had."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        status, _, raw = await self._request("GET", "/view", params=params)
        if status != 200 or not raw:
            raise ComfyUnavailable(f"ComfyUI has no file {image.subfolder}/{image.filename} ({status})", sent=True)
        return raw

    async def upload_image(self, data: bytes, filename: str) -> str:
        """Put an image in ComfyUI's input folder (`POST /upload/image`, replacing a file of that
        name); returns the value a LoadImage node's `image` input takes to load it."""
        form = aiohttp.FormData()
        form.add_field("image", io.BytesIO(data), filename=filename, content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        status, body, _ = await self._request("POST", "/upload/image", form=form)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ComfyRejected(f"ComfyUI answered {status} to uploading the reference image {filename}")
        subfolder = body.get("subfolder")
        return f"{subfolder}/{body['name']}" if isinstance(subfolder, str) and subfolder else str(body["name"])

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt `prompt_id` if it is running (others are untouched), or whatever runs."""
        await self._request("POST", "/interrupt", json_body={"prompt_id": prompt_id} if prompt_id else {})

    async def delete_queued(self, prompt_ids: Iterable[str]) -> None:
        await self._request("POST", "/queue", json_body={"delete": list(prompt_ids)})

    async def object_info(self) -> dict[str, Any]:
        status, body, _ = await self._request("GET", "/object_info")
        if status != 200 or not isinstance(body, dict):
            raise ComfyUnavailable(f"ComfyUI answered {status} to GET /object_info", sent=True)
        return body

    async def system_stats(self) -> dict[str, Any]:
        status, body, _ = await self._request("GET", "/system_stats")
        if status != 200 or not isinstance(body, dict):
            raise ComfyUnavailable(f"ComfyUI answered {status} to GET /system_stats", sent=True)
        return body

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Websocket events, forever: reconnects with exponential backoff after any drop.

        A heartbeat ping detects a dead peer; `Connected` is yielded after each connection.
        """
        url = self.base_url.replace("http", "ws", 1) + "/ws"
        delay, max_delay = self._backoff
        while True:
            try:
                async with self._session.ws_connect(
                    url, params={"clientId": self.client_id}, heartbeat=self._heartbeat,
                    max_msg_size=64 * 1024 * 1024, timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                ) as ws:
                    delay = self._backoff[0]
                    # previews then come with their prompt id (binary type 4), so two clients'
                    # or two jobs' previews are never confused
                    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                    yield Connected()
                    async for msg in ws:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            yield protocol.parse_text(msg.data)
                        elif msg.type is aiohttp.WSMsgType.BINARY:
                            yield protocol.parse_binary(msg.data)
                        elif msg.type is aiohttp.WSMsgType.ERROR:
                            break
                    reason = f"websocket closed ({ws.close_code})"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = f"websocket unavailable: {exc!r}"
            yield Disconnected(reason)
            log.debug("comfyui %s; reconnecting in %.1fs", reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
