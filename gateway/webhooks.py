"""Webhook rules. Pure: which job changes are delivered, where to, how signed, when retried.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): the body is
`{"type", "timestamp", "data"}`, and the headers `webhook-id`, `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`) let the receiver
check that the gateway sent it and that it is not a replay.

Targets are checked against SSRF: a webhook URL is chosen by whoever holds an API key, and the
gateway's network position (next to ComfyUI, often inside a private network or a cloud with a
metadata service at 169.254.169.254) must not be lent to them. Only http(s) to public addresses
is allowed unless the operator allows private ones.
"""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from gateway.jobs import TERMINAL, State

STARTED = "job.started"
MAX_BACKOFF = 3600.0
JITTER = 0.2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """A webhook URL or address the gateway refuses to send to."""


def event_for(before: State, after: State, *, on_start: bool) -> str | None:
    """The event a change of state is delivered as (`job.done`, `job.failed`, `job.started`), or None."""
    if before is after:
        return None
    if after in TERMINAL:
        return f"job.{after.value}"
    if after is State.RUNNING and on_start:
        return STARTED
    return None


def envelope(event: str, at: float, data_json: str) -> str:
    """The delivered body around an already serialized job record."""
    timestamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f'{{"type":"{event}","timestamp":"{timestamp}","data":{data_json}}}'


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def retry_delay(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): base, 2 base, 4 base ...
    at most an hour, each spread by +-20 % so that many failed deliveries do not retry in step."""
    delay = min(base * 2.0 ** (attempt - 1), MAX_BACKOFF)
    fraction = rng.random() if rng is not None else random.random()
    return delay * (1 + JITTER * (2 * fraction - 1))


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    """Raise UnsafeTarget for an address that is not public (unless private ones are allowed)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_multicast or address.is_unspecified:
        raise UnsafeTarget(f"{address} is not a unicast address")
    if address.is_reserved and not address.is_loopback:
        raise UnsafeTarget(f"{address} is a reserved address")
    if address.is_loopback or address.is_link_local or address.is_private:
        if allow_private:
            return
        raise UnsafeTarget(f"{address} is a loopback, private or link-local address")
    if not address.is_global and not allow_private:
        raise UnsafeTarget(f"{address} is not a public address")


def check_url(url: str, *, allow_private: bool) -> str:
    """Check a webhook URL's form and, when its host is an address, the address; returns the host.

    Host names are checked again when a delivery resolves them (every resolved address), since a
    name can point anywhere at any time.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("must be an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("must not carry a user name or password")
    if port == 0:
        raise UnsafeTarget("port 0 cannot be reached")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not allow_private and (host == "localhost" or host.endswith(".localhost")):
            raise UnsafeTarget(f"{host} is a loopback name") from None
        return host
    check_address(address, allow_private=allow_private)
    return host
