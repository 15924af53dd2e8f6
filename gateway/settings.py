"""All configuration, read from the environment in one place.

`SETTINGS` is the single source of truth: each entry names its variable, type, default and
meaning; the README's configuration table must list every one (a test checks it).
"""

from __future__ import annotations

import base64
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.models import MAX_PRIORITY


@dataclass(frozen=True)
class Setting:
    env: str
    attr: str
    parse: Callable[[str], Any]
    default: Any
    help: str


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be between 0 and 65535")
    return value


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _urls(raw: str) -> str:
    """One URL, or several separated by commas (one ComfyUI backend each)."""
    urls = [_url(part) for part in raw.split(",") if part.strip()]
    if not urls:
        raise ValueError("must name at least one URL")
    if len(set(urls)) != len(urls):
        raise ValueError("names a URL twice")
    return ",".join(urls)


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _optional_url(raw: str) -> str | None:
    return _url(raw) if raw.strip() else None


def _webhook_secret(raw: str) -> str | None:
    if not raw:
        return None
    body = raw.removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except ValueError:
        raise ValueError("must be whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must encode 24 to 64 random bytes")
    return raw if raw.startswith("whsec_") else "whsec_" + raw


def _optional(raw: str) -> str | None:
    return raw or None


def _optional_path(raw: str) -> Path | None:
    return Path(raw.strip()) if raw.strip() else None


def _database_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql:// (leave it unset for the embedded SQLite database)")
    return value


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")
_REGION = re.compile(r"^[a-z0-9-]+$")


def _bucket(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not _BUCKET.match(value) or ".." in value:
        raise ValueError("must be a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens")
    return value


def _s3_prefix(raw: str) -> str | None:
    """A key prefix, kept with one trailing slash (`results` -> `results/`)."""
    value = raw.strip().strip("/")
    if not value:
        return None
    if not _PREFIX.match(value) or any(part in {".", ".."} for part in value.split("/")):
        raise ValueError("must be folder names (letters, digits and !_.*'()-) separated by single slashes")
    return value + "/"


def _region(raw: str) -> str:
    value = raw.strip()
    if not _REGION.match(value):
        raise ValueError("must be a region name such as us-east-1 (or auto for Cloudflare R2)")
    return value


def _preview_method(raw: str) -> str:
    value = raw.lower()
    if value not in {"none", "auto", "latent2rgb", "taesd"}:
        raise ValueError("must be one of none, auto, latent2rgb, taesd")
    return value
def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be 1 or 0 (true/false, yes/no, on/off)")


def _shell_words(raw: str) -> tuple[str, ...]:
    return tuple(shlex.split(raw))


def _max_priority(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= MAX_PRIORITY:
        raise ValueError(f"must be between 0 and {MAX_PRIORITY}")
    return value


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"text", "json"}:
        raise ValueError("must be text or json")
    return value


def _log_level(raw: str) -> str:
    value = raw.upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting("GATEWAY_COMFYUI_URL", "comfyui_url", _urls, "http://127.0.0.1:8188",
            "Base URL of the ComfyUI server the gateway feeds; several, separated by commas, feed "
            "several ComfyUI backends from one queue."),
    Setting("GATEWAY_BACKENDS_FILE", "backends_file", _optional_path, None,
            "YAML file naming the ComfyUI backends, each with its own in-flight limit and weight (see Several "
            "ComfyUI backends); instead of GATEWAY_COMFYUI_URL."),
    Setting("GATEWAY_BACKEND_LOST_AFTER", "backend_lost_after", _positive_float, 60.0,
            "With several backends: seconds a backend may be unreachable before its in-flight jobs are "
            "queued again for the others."),
    Setting("GATEWAY_DATA_DIR", "data_dir", Path, Path("data"),
            "Folder for the SQLite database (`gateway.db`) and result images (`uploads/`)."),
    Setting("GATEWAY_DATABASE_URL", "database_url", _database_url, None,
            "PostgreSQL database (`postgresql://user:password@host:5432/name`) shared by several gateway "
            "replicas; unset: SQLite in the data folder."),
    Setting("GATEWAY_REPLICA_LEASE", "replica_lease", _positive_float, 30.0,
            "Seconds a gateway's in-flight jobs stay its own without a heartbeat; then another replica "
            "takes them over."),
    Setting("GATEWAY_PRESETS", "presets_path", Path, Path("presets.yaml"),
            "The presets file; workflow paths in it are relative to its folder."),
    Setting("GATEWAY_HOST", "host", str, "0.0.0.0",
            "Address the HTTP server binds."),
    Setting("GATEWAY_PORT", "port", _port, 5782,
            "Port the HTTP server listens on."),
    Setting("GATEWAY_API_KEY", "api_key", _optional, None,
            "An API key accepted in addition to the keys stored in the database."),
    Setting("GATEWAY_MAX_IN_FLIGHT", "max_in_flight", _positive_int, 2,
            "Prompts the gateway keeps submitted to each ComfyUI at once; the rest wait in the gateway's queue."),
    Setting("GATEWAY_JOB_TIMEOUT", "job_timeout", _positive_float, 600.0,
            "Seconds a submitted job may take in ComfyUI before it is interrupted and failed."),
    Setting("GATEWAY_MAX_QUEUED", "max_queued", _positive_int, 1000,
            "Jobs that may wait in the queue; past it `POST /generate` answers 429 with Retry-After."),
    Setting("GATEWAY_MAX_ATTEMPTS", "max_attempts", _positive_int, 3,
            "Times a job is submitted to ComfyUI before a job ComfyUI keeps losing is failed."),
    Setting("GATEWAY_PREVIEW_METHOD", "preview_method", _preview_method, "latent2rgb",
            "How ComfyUI draws the live previews of sampler steps: none, latent2rgb (cheap), taesd or auto."),
    Setting("GATEWAY_LOG_LEVEL", "log_level", _log_level, "INFO",
            "Logging level: DEBUG, INFO, WARNING or ERROR."),
    Setting("GATEWAY_LOG_FORMAT", "log_format", _log_format, "text",
            "`text` (one readable line a record) or `json` (one JSON object a line, with job_id and prompt_id)."),
    Setting("GATEWAY_AFFINITY_MAX_SKIPS", "affinity_max_skips", _non_negative_int, 8,
            "Checkpoint affinity: most places a waiting job may be overtaken by jobs that use the loaded "
            "checkpoint; 0 turns affinity off (first come, first served within a priority)."),
    Setting("GATEWAY_AFFINITY_MAX_WAIT", "affinity_max_wait", _positive_float, 60.0,
            "Checkpoint affinity: seconds after a job is first overtaken that it may still be overtaken."),
    Setting("GATEWAY_MAX_PRIORITY", "max_priority", _max_priority, 0,
            f"Highest `priority` (0-{MAX_PRIORITY}) a request may ask for, unless its API key has its own "
            "maximum (`keys create --max-priority`)."),
    Setting("GATEWAY_COMFYUI_MANAGED", "comfyui_managed", _flag, False,
            "1: the gateway runs ComfyUI itself as a supervised child process (see Managed ComfyUI)."),
    Setting("GATEWAY_COMFYUI_DIR", "comfyui_dir", Path, Path("comfyui/ComfyUI"),
            "Managed mode: the ComfyUI folder (the one holding `main.py`)."),
    Setting("GATEWAY_COMFYUI_PYTHON", "comfyui_python", Path, Path("comfyui/venv/bin/python"),
            "Managed mode: the Python interpreter that runs ComfyUI (its own venv)."),
    Setting("GATEWAY_COMFYUI_PORT", "comfyui_port", _port, 8188,
            "Managed mode: port ComfyUI listens on, on 127.0.0.1 only; the gateway talks to it there."),
    Setting("GATEWAY_COMFYUI_ARGS", "comfyui_args", _shell_words, None,
            "Managed mode: extra ComfyUI arguments, shell-quoted, e.g. `--cpu` or `--lowvram`."),
    Setting("GATEWAY_IDEMPOTENCY_HOURS", "idempotency_hours", _positive_float, 24.0,
            "Hours an `Idempotency-Key` is remembered; a replay within it gets the original answer."),
    Setting("GATEWAY_WEBHOOK_URL", "webhook_url", _optional_url, None,
            "Webhook URL for requests that name none."),
    Setting("GATEWAY_WEBHOOK_SECRET", "webhook_secret", _webhook_secret, None,
            "Standard Webhooks signing secret (`whsec_` + base64); if unset one is made once, stored and logged."),
    Setting("GATEWAY_WEBHOOK_ON_START", "webhook_on_start", _flag, False,
            "Also deliver `job.started` when a job starts running (terminal states are always delivered)."),
    Setting("GATEWAY_WEBHOOK_MAX_ATTEMPTS", "webhook_max_attempts", _positive_int, 8,
            "Attempts per webhook delivery before it is given up."),
    Setting("GATEWAY_WEBHOOK_TIMEOUT", "webhook_timeout", _positive_float, 10.0,
            "Seconds one webhook attempt may take, connecting included."),
    Setting("GATEWAY_WEBHOOK_BACKOFF", "webhook_backoff", _positive_float, 5.0,
            "Seconds before the first webhook retry; each later one waits twice as long (at most 1 hour), +-20 %."),
    Setting("GATEWAY_WEBHOOK_ALLOW_PRIVATE", "webhook_allow_private", _flag, False,
            "Allow webhooks to loopback, private and link-local addresses (only on a trusted network)."),
    Setting("GATEWAY_RETENTION_DAYS", "retention_days", _non_negative_int, 0,
            "Days unsaved result images are kept; 0 keeps them forever. Saved results are never removed."),
    Setting("GATEWAY_S3_BUCKET", "s3_bucket", _bucket, None,
            "Keep result images and thumbnails in this S3-compatible bucket instead of the data folder "
            "(see Results in an S3-compatible bucket)."),
    Setting("GATEWAY_S3_ENDPOINT_URL", "s3_endpoint_url", _optional_url, None,
            "With a bucket: the S3 API of a store other than AWS (MinIO, Cloudflare R2, ...); unset: AWS S3."),
    Setting("GATEWAY_S3_REGION", "s3_region", _region, "us-east-1",
            "With a bucket: its region (`auto` for Cloudflare R2)."),
    Setting("GATEWAY_S3_PREFIX", "s3_prefix", _s3_prefix, None,
            "With a bucket: a folder for every object the gateway writes, e.g. `comfy/`; unset: the bucket's root."),
    Setting("GATEWAY_S3_PUBLIC_URL", "s3_public_url", _optional_url, None,
            "With a bucket: where image URLs start (a CDN, or the bucket's public address), object keys "
            "appended; unset: the endpoint URL + `/<bucket>`, or `https://<bucket>.s3.<region>.amazonaws.com`."),
    Setting("GATEWAY_S3_ACCESS_KEY_ID", "s3_access_key_id", _optional, None,
            "With a bucket: the access key; unset: the standard AWS credentials (`AWS_ACCESS_KEY_ID`, "
            "credential files, an instance role)."),
    Setting("GATEWAY_S3_SECRET_ACCESS_KEY", "s3_secret_access_key", _optional, None,
            "With a bucket: the secret of `GATEWAY_S3_ACCESS_KEY_ID` (set both or neither)."),
)


_DEFAULTS = {s.attr: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Typed configuration. Build it with `Settings.from_env()` or directly in tests; the
    defaults are the ones in `SETTINGS`."""

    comfyui_url: str = _DEFAULTS["comfyui_url"]
    backends_file: Path | None = _DEFAULTS["backends_file"]
    backend_lost_after: float = _DEFAULTS["backend_lost_after"]
    data_dir: Path = _DEFAULTS["data_dir"]
    database_url: str | None = _DEFAULTS["database_url"]
    replica_lease: float = _DEFAULTS["replica_lease"]
    presets_path: Path = _DEFAULTS["presets_path"]
    host: str = _DEFAULTS["host"]
    port: int = _DEFAULTS["port"]
    api_key: str | None = _DEFAULTS["api_key"]
    max_in_flight: int = _DEFAULTS["max_in_flight"]
    job_timeout: float = _DEFAULTS["job_timeout"]
    max_queued: int = _DEFAULTS["max_queued"]
    max_attempts: int = _DEFAULTS["max_attempts"]
    preview_method: str = _DEFAULTS["preview_method"]
    log_level: str = _DEFAULTS["log_level"]
    log_format: str = _DEFAULTS["log_format"]
    affinity_max_skips: int = _DEFAULTS["affinity_max_skips"]
    affinity_max_wait: float = _DEFAULTS["affinity_max_wait"]
    max_priority: int = _DEFAULTS["max_priority"]
    comfyui_managed: bool = _DEFAULTS["comfyui_managed"]
    comfyui_dir: Path = _DEFAULTS["comfyui_dir"]
    comfyui_python: Path = _DEFAULTS["comfyui_python"]
    comfyui_port: int = _DEFAULTS["comfyui_port"]
    comfyui_args: tuple[str, ...] | None = _DEFAULTS["comfyui_args"]
    idempotency_hours: float = _DEFAULTS["idempotency_hours"]
    webhook_url: str | None = _DEFAULTS["webhook_url"]
    webhook_secret: str | None = _DEFAULTS["webhook_secret"]
    webhook_on_start: bool = _DEFAULTS["webhook_on_start"]
    webhook_max_attempts: int = _DEFAULTS["webhook_max_attempts"]
    webhook_timeout: float = _DEFAULTS["webhook_timeout"]
    webhook_backoff: float = _DEFAULTS["webhook_backoff"]
    webhook_allow_private: bool = _DEFAULTS["webhook_allow_private"]
    retention_days: int = _DEFAULTS["retention_days"]
    s3_bucket: str | None = _DEFAULTS["s3_bucket"]
    s3_endpoint_url: str | None = _DEFAULTS["s3_endpoint_url"]
    s3_region: str = _DEFAULTS["s3_region"]
    s3_prefix: str | None = _DEFAULTS["s3_prefix"]
    s3_public_url: str | None = _DEFAULTS["s3_public_url"]
    s3_access_key_id: str | None = _DEFAULTS["s3_access_key_id"]
    s3_secret_access_key: str | None = _DEFAULTS["s3_secret_access_key"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `SETTINGS` entry; a bad value raises ConfigError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is None or raw == "":
                continue
            try:
                values[setting.attr] = setting.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{setting.env}={raw!r} is not valid: {exc}") from exc
        if values.get("backends_file") is not None:
            if "comfyui_url" in values:
                raise ConfigError("GATEWAY_BACKENDS_FILE and GATEWAY_COMFYUI_URL are both set: name the ComfyUI "
                                  "backends in one place only (the file, or the URLs)")
            if values.get("comfyui_managed"):
                raise ConfigError("GATEWAY_BACKENDS_FILE contradicts GATEWAY_COMFYUI_MANAGED=1: the managed mode "
                                  "runs one ComfyUI, at GATEWAY_COMFYUI_URL")
        if values.get("comfyui_managed"):
            own = cls(comfyui_port=values.get("comfyui_port", _DEFAULTS["comfyui_port"])).managed_comfyui_url
            if values.setdefault("comfyui_url", own) != own:
                raise ConfigError(f"GATEWAY_COMFYUI_URL={values['comfyui_url']!r} contradicts "
                                  f"GATEWAY_COMFYUI_MANAGED=1: the managed ComfyUI answers at {own} "
                                  "(choose its port with GATEWAY_COMFYUI_PORT)")
        problem = s3_problem(values)
        if problem:
            raise ConfigError(problem)
        return cls(**values)

    @property
    def comfyui_urls(self) -> tuple[str, ...]:
        """Every ComfyUI backend, in the configured order."""
        return tuple(url for url in self.comfyui_url.split(",") if url)

    @property
    def s3_public_base(self) -> str | None:
        """With a bucket: the start of image URLs (an object's key follows a `/`)."""
        if self.s3_bucket is None:
            return None
        if self.s3_public_url:
            return self.s3_public_url
        if self.s3_endpoint_url:
            return f"{self.s3_endpoint_url}/{self.s3_bucket}"
        return f"https://{self.s3_bucket}.s3.{self.s3_region}.amazonaws.com"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "gateway.db"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def managed_comfyui_url(self) -> str:
        """Managed mode: where the child ComfyUI answers."""
        return f"http://127.0.0.1:{self.comfyui_port}"

    @property
    def comfyui_data_dir(self) -> Path:
        """Managed mode: ComfyUI's output, temp, user and input folders and its log live here."""
        return self.data_dir / "comfyui"

    @property
    def object_info_cache(self) -> Path:
        """The last `/object_info` fetched from ComfyUI, used to convert editor-format workflows."""
        return self.data_dir / "object_info.json"

    @property
    def references_dir(self) -> Path:
        """Reference images sent with requests, kept until their jobs are submitted."""
        return self.data_dir / "references"


_S3_OPTIONS = [s for s in SETTINGS if s.env.startswith("GATEWAY_S3_") and s.attr != "s3_bucket"]


def s3_problem(values: Mapping[str, Any]) -> str | None:
    """What is wrong with the S3 settings given (parsed values by attribute), or None."""
    if values.get("s3_bucket") is None:
        stray = [s.env for s in _S3_OPTIONS if values.get(s.attr) is not None]
        if stray:
            return (f"{', '.join(stray)} set without GATEWAY_S3_BUCKET: set the bucket to keep results there, "
                    "or unset them to keep results in the data folder")
        return None
    if (values.get("s3_access_key_id") is None) != (values.get("s3_secret_access_key") is None):
        return ("GATEWAY_S3_ACCESS_KEY_ID and GATEWAY_S3_SECRET_ACCESS_KEY go together: set both, or neither "
                "to use the standard AWS credentials")
    if "." in values["s3_bucket"] and not values.get("s3_endpoint_url") and not values.get("s3_public_url"):
        return (f"GATEWAY_S3_BUCKET={values['s3_bucket']!r} has dots, so its AWS address "
                "https://<bucket>.s3.<region>.amazonaws.com has no valid certificate: set GATEWAY_S3_PUBLIC_URL "
                "(a CDN, say) or choose a bucket name without dots")
    return None


def _check_consistency() -> None:
    attrs = {f.name for f in fields(Settings)}
    declared = {s.attr for s in SETTINGS}
    if attrs != declared:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"SETTINGS and Settings disagree: {sorted(attrs ^ declared)}")


_check_consistency()
