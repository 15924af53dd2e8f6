"""Which ComfyUI backends the gateway feeds: names, URLs, in-flight limits and weights.

Two sources, never both: the URLs of `GATEWAY_COMFYUI_URL` (each named after its host and port,
with the global in-flight limit and weight 1), or a backends file (`GATEWAY_BACKENDS_FILE`):

    backends:
      - name: gpu1                # letters, digits and . _ : -  (the `backend` label in /metrics)
        url: http://gpu1:8188
        max_in_flight: 3          # optional: GATEWAY_MAX_IN_FLIGHT
        weight: 2                 # optional: 1

Parsing is pure (`parse_backends`); every mistake is a ConfigError naming the file, the entry and
the field. `wake_order` is the rule that makes weights matter (see its docstring).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from gateway.errors import ConfigError

DEFAULT_WEIGHT = 1.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_FIELDS = ("name", "url", "max_in_flight", "weight")


@dataclass(frozen=True)
class BackendSpec:
    """One configured ComfyUI backend."""

    name: str
    url: str
    max_in_flight: int
    weight: float = DEFAULT_WEIGHT


def check_url(raw: str) -> str:
    """A ComfyUI base URL without its trailing slash; ValueError says what is wrong."""
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    parts = urlsplit(value)
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


def from_urls(urls: Sequence[str], *, max_in_flight: int) -> tuple[BackendSpec, ...]:
    """Backends for plain URLs: each named after its host and port (`gpu1:8188`), or after its
    whole URL where two would share a name."""
    names = [urlsplit(url).netloc + urlsplit(url).path for url in urls]
    if len(set(names)) != len(names):
        names = list(urls)
    return tuple(BackendSpec(name=name, url=url, max_in_flight=max_in_flight)
                 for name, url in zip(names, urls, strict=True))


def parse_backends(data: object, *, source: str, max_in_flight: int) -> tuple[BackendSpec, ...]:
    """The backends of a parsed backends file; `max_in_flight` is the default limit."""
    if not isinstance(data, Mapping) or "backends" not in data:
        raise ConfigError(f"{source}: expected a mapping with a `backends` list")
    unknown = sorted(str(k) for k in data if k != "backends")
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (only `backends` is read)")
    entries = data["backends"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: `backends` must be a list of at least one backend")
    specs: list[BackendSpec] = []
    for index, entry in enumerate(entries):
        spec = _entry(entry, where=f"{source}: backends[{index}]", max_in_flight=max_in_flight)
        for earlier in specs:
            if earlier.name == spec.name:
                raise ConfigError(f"{source}: backends[{index}] ({spec.name!r}): name: {spec.name!r} is used twice")
            if earlier.url == spec.url:
                raise ConfigError(f"{source}: backends[{index}] ({spec.name!r}): url: {spec.url} is also "
                                  f"backend {earlier.name!r}")
        specs.append(spec)
    return tuple(specs)


def _entry(entry: object, *, where: str, max_in_flight: int) -> BackendSpec:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name and url, not {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({name!r})"
    unknown = sorted(str(k) for k in entry if k not in _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name: must be 1 to 64 letters, digits or . _ : - (starting with a letter "
                          f"or digit), not {name!r}")
    url = entry.get("url")
    if not isinstance(url, str):
        raise ConfigError(f"{where}: url: is required (http://host:port of a ComfyUI)")
    try:
        url = check_url(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: url: {url!r} {exc}") from None
    limit = entry.get("max_in_flight", max_in_flight)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"{where}: max_in_flight: must be a whole number of at least 1, not {limit!r}")
    weight = entry.get("weight", DEFAULT_WEIGHT)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ConfigError(f"{where}: weight: must be a number greater than 0, not {weight!r}")
    return BackendSpec(name=name, url=url, max_in_flight=limit, weight=float(weight))


def load_backends(path: Path, *, max_in_flight: int) -> tuple[BackendSpec, ...]:
    """Read and check a backends file (at startup)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the backends file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_backends(data, source=str(path), max_in_flight=max_in_flight)


def configured(*, urls: Sequence[str], file: Path | None, max_in_flight: int) -> tuple[BackendSpec, ...]:
    """The backends to feed: from the file when one is set, else from the URLs."""
    if file is not None:
        return load_backends(file, max_in_flight=max_in_flight)
    return from_urls(urls, max_in_flight=max_in_flight)


@dataclass(frozen=True)
class Offer:
    """A backend as the wake-up rule sees it."""

    weight: float
    checkpoint: str | None
    """The checkpoint it will have loaded once its prompts in flight are done (None: unknown)."""


def wake_order(offers: Sequence[Offer], wanted: set[str]) -> list[int]:
    """In which order to wake backends when jobs using the checkpoints `wanted` are queued: those
    that will have one of them loaded first, then by weight (highest first), then in configured
    order. Each woken backend with a free slot claims at once, so the first woken takes the job
    when several are free: a loaded checkpoint wins, and among the rest the heaviest backend."""
    return sorted(range(len(offers)),
                  key=lambda i: (offers[i].checkpoint not in wanted, -offers[i].weight, i))
