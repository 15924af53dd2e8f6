"""`GET /metrics`: Prometheus text format, without an API key (like `/health`)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api.state import FLEET, METRICS, STORE
from gateway.metrics import CONTENT_TYPE, BackendFigures, Live

UNMATCHED = "unmatched"
"""The route label of requests that matched no route (404, 405)."""


async def metrics(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    backends = fleet.backends
    live = Live(jobs=await request.app[STORE].live_counts(), comfyui_up=fleet.connected,
                in_flight=fleet.in_flight, model_swaps=sum(b.model_swaps for b in backends),
                loaded_checkpoint=backends[0].loaded_checkpoint,
                backends=tuple(BackendFigures(name=b.name, url=b.url, up=b.state != "unreachable",
                                              in_flight=b.in_flight, max_in_flight=b.max_in_flight,
                                              model_swaps=b.model_swaps, loaded_checkpoint=b.loaded_checkpoint)
                               for b in backends))
    return web.Response(body=request.app[METRICS].render(live), headers={"Content-Type": CONTENT_TYPE})


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by its route's pattern (`/api/v1/job/{job_id}`, never the raw path)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _count(request, exc.status)
        raise
    _count(request, response.status)
    return response


def _count(request: web.Request, status: int) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED
    request.app[METRICS].http_requests.labels(route=route, method=request.method, status=str(status)).inc()


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics)]
