"""A Python client for the gateway's v1 API (httpx; sync and async), and the `generate` command.

    from gateway.sdk import GatewayClient

    with GatewayClient("http://localhost:5782", key="cgw_...") as gateway:
        for job_id in gateway.generate("sd15", count=2, seed=42):
            record = gateway.wait(job_id)
            gateway.download(record.result.image_url, f"{job_id}.png")
"""

from gateway.sdk.client import DEFAULT_URL, AsyncGatewayClient, GatewayClient
from gateway.sdk.errors import ApiError, ClientError, GatewayUnreachable, StreamLost
from gateway.sdk.events import (
    JobEnd,
    JobEvent,
    JobUpdate,
    OtherEvent,
    PreviewImage,
    ProgressUpdate,
    QueueUpdate,
)

__all__ = [
    "DEFAULT_URL", "ApiError", "AsyncGatewayClient", "ClientError", "GatewayClient", "GatewayUnreachable", "JobEnd",
    "JobEvent", "JobUpdate", "OtherEvent", "PreviewImage", "ProgressUpdate", "QueueUpdate", "StreamLost",
]
