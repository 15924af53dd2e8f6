"""`GatewayClient` (sync) and `AsyncGatewayClient` (async): the v1 API over httpx.

Both carry the same `calls` (what to send, how to read the answer) and the same `JobStream` (typed
server-sent events, reconnects); only the waiting differs. Every failure is a `ClientError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from contextlib import aclosing, closing, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from gateway.models import ImageList, JobRecord, PresetDetail, PresetSummary, StatusOut
from gateway.sdk import calls
from gateway.sdk.calls import Call, api_error, is_missing_route
from gateway.sdk.errors import ApiError, GatewayUnreachable
from gateway.sdk.events import JobEnd, JobEvent, JobStream

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:5782"
FINISHED = ("done", "failed")
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)
"""The gateway sends a keep-alive comment every ~15 s, so a minute of silence means the stream is dead."""
_CUT = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout)
"""A stream that ends like this is opened again; the job goes on in the gateway regardless."""


@contextmanager
def _reaching(url: str) -> Iterator[None]:
    """httpx's transport errors as `GatewayUnreachable`, naming the gateway."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise GatewayUnreachable(f"the gateway at {url} did not answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise GatewayUnreachable(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}") from exc


def _save(content: bytes, path: str | Path) -> Path:
    """Write a file whole or not at all (a `.part` file renamed at the end)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.write_bytes(content)
    part.replace(target)
    return target


def _downloaded(answer: httpx.Response) -> bytes:
    if answer.status_code != 200:
        raise api_error(answer.status_code, answer.content)
    return answer.content


class _Base:
    def __init__(self, url: str, key: str | None) -> None:
        self.url = url.rstrip("/")
        self._auth = {"X-API-Key": key} if key else {}

    def _stream_request(self, stream: JobStream) -> dict[str, Any]:
        return {"params": stream.params, "headers": {**self._auth, **stream.headers()}, "timeout": STREAM_TIMEOUT}


class GatewayClient(_Base):
    """The gateway's v1 API, blocking. Use as a context manager, or call `close()`.

    `url` is the gateway's base URL, `key` an API key; `transport` replaces httpx's (tests, proxies).
    """

    def __init__(self, url: str = DEFAULT_URL, key: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, key)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        with _reaching(self.url):
            answer = self._http.request(call.method, call.path, params=call.params, json=call.json,
                                        headers=self._auth)
        return call.result(answer.status_code, answer.content)

    def presets(self) -> list[PresetSummary]:
        return self._send(calls.presets())

    def preset(self, slug: str) -> PresetDetail:
        return self._send(calls.preset(slug))

    def generate(self, slug: str, **overrides: Any) -> list[str]:
        """Queue jobs of a preset (count, seed, width, height, checkpoint, extra_positive, ...); their ids."""
        return self._send(calls.generate(slug, overrides))

    def job(self, job_id: str) -> JobRecord:
        return self._send(calls.job(job_id))

    def cancel(self, job_id: str) -> JobRecord:
        return self._send(calls.cancel(job_id))

    def interrupt_all(self) -> int:
        """Cancel every waiting and running job; how many there were."""
        return self._send(calls.interrupt_all())

    def status(self) -> StatusOut:
        return self._send(calls.status())

    def images(self, limit: int = 50, offset: int = 0, preset: str | None = None) -> ImageList:
        return self._send(calls.images(limit, offset, preset))

    def download(self, image_url: str, path: str | Path) -> Path:
        """Save an image (`image_url` as the API gives it, relative or absolute) to `path`; the path."""
        with _reaching(self.url):
            content = _downloaded(self._http.get(image_url))
        return _save(content, path)

    def events(self, job_id: str, *, previews: bool = False) -> Generator[JobEvent, None, None]:
        """A job's events as they happen, ending with `JobEnd`; a dropped stream is opened again."""
        stream = JobStream(job_id, previews=previews)
        while True:
            with _reaching(self.url):
                try:
                    with self._http.stream("GET", stream.path, **self._stream_request(stream)) as answer:
                        if answer.status_code != 200:
                            raise api_error(answer.status_code, answer.read())
                        for text in answer.iter_text():
                            yield from stream.feed(text)
                            if stream.finished:
                                return
                except _CUT:
                    pass
            time.sleep(stream.closed())

    def wait(self, job_id: str, *, poll: float = 1.0) -> JobRecord:
        """The job's final record (done or failed). Follows its event stream; polls a gateway without one."""
        try:
            with closing(self.events(job_id)) as events:
                for event in events:
                    if isinstance(event, JobEnd):
                        return event.job
        except ApiError as exc:
            if not is_missing_route(exc):
                raise
        while (record := self.job(job_id)).status not in FINISHED:
            time.sleep(poll)
        return record


class AsyncGatewayClient(_Base):
    """The same API for asyncio: every method is a coroutine, `events()` an async iterator."""

    def __init__(self, url: str = DEFAULT_URL, key: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, key)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        with _reaching(self.url):
            answer = await self._http.request(call.method, call.path, params=call.params, json=call.json,
                                              headers=self._auth)
        return call.result(answer.status_code, answer.content)

    async def presets(self) -> list[PresetSummary]:
        return await self._send(calls.presets())

    async def preset(self, slug: str) -> PresetDetail:
        return await self._send(calls.preset(slug))

    async def generate(self, slug: str, **overrides: Any) -> list[str]:
        return await self._send(calls.generate(slug, overrides))

    async def job(self, job_id: str) -> JobRecord:
        return await self._send(calls.job(job_id))

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._send(calls.cancel(job_id))

    async def interrupt_all(self) -> int:
        return await self._send(calls.interrupt_all())

    async def status(self) -> StatusOut:
        return await self._send(calls.status())

    async def images(self, limit: int = 50, offset: int = 0, preset: str | None = None) -> ImageList:
        return await self._send(calls.images(limit, offset, preset))

    async def download(self, image_url: str, path: str | Path) -> Path:
        with _reaching(self.url):
            content = _downloaded(await self._http.get(image_url))
        return await asyncio.to_thread(_save, content, path)

    async def events(self, job_id: str, *, previews: bool = False) -> AsyncGenerator[JobEvent, None]:
        stream = JobStream(job_id, previews=previews)
        while True:
            with _reaching(self.url):
                try:
                    async with self._http.stream("GET", stream.path, **self._stream_request(stream)) as answer:
                        if answer.status_code != 200:
                            raise api_error(answer.status_code, await answer.aread())
                        async for text in answer.aiter_text():
                            for event in stream.feed(text):
                                yield event
                            if stream.finished:
                                return
                except _CUT:
                    pass
            await asyncio.sleep(stream.closed())

    async def wait(self, job_id: str, *, poll: float = 1.0) -> JobRecord:
        try:
            async with aclosing(self.events(job_id)) as events:
                async for event in events:
                    if isinstance(event, JobEnd):
                        return event.job
        except ApiError as exc:
            if not is_missing_route(exc):
                raise
        while (record := await self.job(job_id)).status not in FINISHED:
            await asyncio.sleep(poll)
        return record
