"""Pydantic models of what crosses the API: requests in, records out.

The field names of the GAZE v1 contract are kept exactly; extra fields are additions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SEED = 2**64 - 1
"""The largest seed ComfyUI's samplers accept."""
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096
MAX_COUNT = 20
MAX_PROMPT_CHARS = 10_000
MAX_PRIORITY = 10
"""Job priorities run from -MAX_PRIORITY to MAX_PRIORITY; higher goes first, 0 is the default."""
MAX_REFERENCE_IMAGES = 6
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 100
MAX_METADATA_VALUE_CHARS = 500
MAX_CLIENT_REFERENCE_CHARS = 200

GazeStatus = Literal["pending", "processing", "done", "failed"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_printable)]


MAX_LORAS = 8


class LoraRequest(BaseModel):
    """One LoRA applied to the checkpoint's model and CLIP."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Text = Field(min_length=1, max_length=500, description="LoRA file name as ComfyUI lists it.")
    strength: float = Field(1.0, ge=-10, le=10, description="Strength for both model and CLIP.")


class GenerateRequest(BaseModel):
    """Body of `POST /api/v1/generate/<slug>`. Every field is optional; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    count: int = Field(1, ge=1, le=MAX_COUNT, description="Number of images (one job each).")
    checkpoint: Text | None = Field(
        None, min_length=1, max_length=500, description="Checkpoint file name as ComfyUI lists it."
    )
    extra_positive: Text = Field("", max_length=MAX_PROMPT_CHARS, description="Appended to the positive prompt.")
    extra_negative: Text = Field("", max_length=MAX_PROMPT_CHARS, description="Appended to the negative prompt.")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Seed of the first job; job i uses seed + i. Random if absent."
    )
    width: int | None = Field(None, ge=8, le=MAX_SIDE, multiple_of=8, description="Width in pixels.")
    height: int | None = Field(None, ge=8, le=MAX_SIDE, multiple_of=8, description="Height in pixels.")
    steps: int | None = Field(None, ge=1, le=200, description="Sampler steps.")
    cfg: float | None = Field(None, ge=0, le=50, description="Classifier-free guidance scale.")
    sampler: Text | None = Field(None, min_length=1, max_length=100, description="Sampler name, e.g. euler.")
    scheduler: Text | None = Field(None, min_length=1, max_length=100, description="Scheduler name, e.g. karras.")
    denoise: float | None = Field(None, ge=0, le=1, description="Denoising strength, 0-1.")
    batch: int | None = Field(None, ge=1, le=16, description="Images per job (the empty latent's batch size).")
    loras: list[LoraRequest] = Field(default_factory=list, max_length=MAX_LORAS,
                                     description="LoRAs to apply, in order.")
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY,
                          description="Higher runs first; above the API key's maximum is refused (403).")
    client_reference: Text | None = Field(
        None, max_length=MAX_CLIENT_REFERENCE_CHARS, description="Your correlation id, echoed in the job record."
    )
    metadata: dict[str, Text] = Field(
        default_factory=dict, description="String map echoed in the job record and webhook deliveries."
    )
    webhook_url: Text | None = Field(
        None, max_length=2000, description="Where the job record is POSTed when the job finishes."
    )
    reference_images: list[str] | None = Field(
        None, description="1-6 images (data URLs or raw base64) bound to the preset's image inputs."
    )

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys (got {len(value)})")
        for key, item in value.items():
            _printable(key)
            if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
                raise ValueError(f"keys must be 1 to {MAX_METADATA_KEY_CHARS} characters ({key[:20]!r}...)")
            if len(item) > MAX_METADATA_VALUE_CHARS:
                raise ValueError(f"value of {key!r} must be at most {MAX_METADATA_VALUE_CHARS} characters")
        return value

    @field_validator("reference_images")
    @classmethod
    def _check_reference_count(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not 1 <= len(value) <= MAX_REFERENCE_IMAGES:
            raise ValueError(f"give 1 to {MAX_REFERENCE_IMAGES} images (got {len(value)})")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> GenerateRequest:
        if (self.width is None) != (self.height is None):
            missing = "height" if self.height is None else "width"
            raise ValueError(f"{missing}: width and height must be given together")
        if self.width is not None and self.height is not None and self.width * self.height > MAX_PIXELS:
            raise ValueError(f"width: width x height must be at most {MAX_PIXELS} pixels")
        if self.seed is not None and self.seed + self.count - 1 > MAX_SEED:
            raise ValueError(f"seed: seed + count - 1 must be at most {MAX_SEED}")
        return self


class QueuedJob(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"


class GenerateResponse(BaseModel):
    """The 202 answer: one job per image."""

    jobs: list[QueuedJob]


class ImageOut(BaseModel):
    image_url: str
    relative_path: str
    node_id: str | None = None


class JobResult(BaseModel):
    image_url: str
    relative_path: str
    seed: int | None


class JobProgress(BaseModel):
    """Where a processing job is: the node ComfyUI runs, and its sampler steps if it has them."""

    step: int = Field(description="Steps done by the node that last reported steps (a sampler); 0 before any.")
    total_steps: int = Field(description="Steps that node has in all; 0 before any node reported steps.")
    percent: float = Field(description="step / total_steps, in percent.")
    node: str | None = Field(description="Id of the node ComfyUI is executing.")
    node_type: str | None = Field(description="Its class, e.g. KSampler.")


class JobRecord(BaseModel):
    """`GET /api/v1/job/<id>`: the GAZE fields first, then additions."""

    id: str
    label: str
    status: GazeStatus
    error: str | None
    result: JobResult | None
    preset: str
    params: dict[str, str | int | float]
    priority: int = Field(0, description="Higher runs first.")
    images: list[ImageOut]
    created_at: str
    started_at: str | None
    finished_at: str | None
    queue_position: int | None = Field(None, description="1-based place in the queue while pending.")
    progress: JobProgress | None = Field(None, description="Live progress while processing.")
    client_reference: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class DeliveryAttempt(BaseModel):
    attempt: int
    at: str
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryRecord(BaseModel):
    """One webhook delivery of a job event and every attempt made at it."""

    id: str
    event: str
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: list[DeliveryAttempt]
    created_at: str
    next_attempt_at: str | None


class DeliveryList(BaseModel):
    job_id: str
    deliveries: list[DeliveryRecord]


class SaveRequest(BaseModel):
    """Body of `POST /api/v1/saved`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    job_id: Text = Field(min_length=1, max_length=100)
    label: Text = Field(min_length=1, max_length=200)


class SavedRecord(BaseModel):
    id: str
    label: str
    image_url: str
    job_id: str
    created: int
    """Unix seconds."""


class SavedList(BaseModel):
    saved: list[SavedRecord]
    total: int
    limit: int
    offset: int


class ImageItem(BaseModel):
    """One result image in the gallery."""

    id: str
    job_id: str
    preset: str
    image_url: str
    thumb_url: str | None
    relative_path: str
    seed: int | None
    created_at: str


class ImageList(BaseModel):
    images: list[ImageItem]
    total: int = Field(description="Images matching the filter, in all.")


class JobCountsOut(BaseModel):
    waiting: int = Field(description="Jobs not started yet (in the gateway's queue or ComfyUI's).")
    running: int
    done_last_hour: int
    failed_last_hour: int


class BackendOut(BaseModel):
    name: str = Field(description="The backend's name: from the backends file, else its host and port.")
    url: str
    reachable: bool = Field(description="Whether the websocket to this ComfyUI is connected.")
    state: Literal["idle", "loading", "running", "errored", "unreachable"]
    message: str = Field(description="What the state means now, for people.")
    version: str | None = Field(description="ComfyUI's version, once it has answered.")
    loaded_checkpoint: str | None = Field(description="The checkpoint ComfyUI last loaded for a job, if known.")
    model_swaps: int = Field(description="Checkpoint changes since the gateway started.")
    in_flight: int = Field(0, description="Prompts the gateway has in this ComfyUI now.")
    max_in_flight: int = Field(description="The most prompts the gateway keeps in this ComfyUI at once.")
    weight: float = Field(description="Preference among free backends for new jobs (higher first).")


class EstimatesOut(BaseModel):
    job_seconds: float | None = Field(description="Median run time of recent jobs.")
    wait_seconds: float | None = Field(description="Expected wait before a job submitted now starts.")


class StatusOut(BaseModel):
    """`GET /api/v1/status`."""

    jobs: JobCountsOut
    backend: BackendOut = Field(description="The first ComfyUI backend (the only one, unless several are set).")
    backends: list[BackendOut] = Field(description="Every ComfyUI backend, in the configured order.")
    estimates: EstimatesOut
    managed_comfyui: ManagedComfyUI | None = Field(
        None, description="The ComfyUI process the gateway runs itself (GATEWAY_COMFYUI_MANAGED=1); else null.")


class PresetInfo(BaseModel):
    """What the list and the detail of a preset share."""

    preset_id: str
    slug: str
    name: str
    has_cover: bool
    cover_url: str | None = None
    description: str | None = None


class PresetSummary(PresetInfo):
    parameters: list[str] = Field(default_factory=list, description="Names of the parameters the preset offers.")


class PresetList(BaseModel):
    presets: list[PresetSummary]


class ParameterInfo(BaseModel):
    """One request field a preset accepts, with what may be sent in it."""

    name: str = Field(description="The field of the generate request.")
    type: Literal["integer", "number", "string"]
    default: str | int | float | None = Field(description="Used when the field is not sent (null: random seed).")
    minimum: int | float | None = None
    maximum: int | float | None = None
    multiple_of: int | None = None
    max_length: int | None = None
    allowed: list[str | int | float] | None = Field(
        None, description="The values ComfyUI offers (checkpoints, samplers, ...); null when not known."
    )
    description: str
    bound_to: list[str] = Field(description="Node inputs the value goes to, as '<node id>.<input>'.")


class PresetDetail(PresetInfo):
    """`GET /api/v1/presets/<slug>`: the summary fields, with each parameter described."""

    parameters: list[ParameterInfo]


ManagedState = Literal["starting", "running", "restarting", "stopped", "failed"]


class ManagedComfyUI(BaseModel):
    """What the gateway's own ComfyUI child process is doing (managed mode only)."""

    model_config = ConfigDict(frozen=True)

    state: ManagedState
    message: str
    restarts: int = Field(0, description="Times the process was started again after it died.")
    pid: int | None = None
SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Binding = str | list[str]


class PresetChange(BaseModel):
    """Body of `PATCH /api/v1/presets/<slug>`: the fields given replace the preset's; `null`
    removes an optional one (description, defaults, params, timeout, cover)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Text | None = Field(None, min_length=1, max_length=200, description="Shown to people.")
    description: Text | None = Field(None, max_length=2000)
    workflow: dict[str, Any] | None = Field(
        None, description="The workflow: API format (Export (API)) or the editor's saved format.")
    defaults: dict[str, str | int | float] | None = Field(None, description="Parameter values used when a "
                                                          "request gives none.")
    params: dict[str, Binding] | None = Field(None, description="Parameter bindings: name -> '<node id or "
                                              "title>.<input>' (or a list of them).")
    timeout: float | None = Field(None, gt=0, description="Seconds a job of this preset may run in ComfyUI.")
    cover: str | None = Field(None, max_length=1_400_000, description="Cover image (PNG, JPEG or WebP), "
                              "base64 or a data: URL.")


class PresetCreate(PresetChange):
    """Body of `POST /api/v1/presets`."""

    slug: str = Field(pattern=SLUG_PATTERN, description="1-64 letters, digits, '_' or '-'.")
    name: Text = Field(min_length=1, max_length=200)
    workflow: dict[str, Any]


class PresetDeleted(BaseModel):
    deleted: str = Field(description="Slug of the deleted preset.")


class PresetCopy(BaseModel):
    """Body of `POST /api/v1/presets/<slug>/duplicate`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    slug: str = Field(pattern=SLUG_PATTERN, description="Slug of the copy.")
    name: Text | None = Field(None, min_length=1, max_length=200, description="Default: '<name> (copy)'.")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    field: str | None = Field(None, description="The request field at fault, for 400 answers about one field.")


class QueuePositionOut(BaseModel):
    """Data of a job stream's `queue` event."""

    queue_position: int = Field(description="1-based place among waiting jobs.")


class PreviewOut(BaseModel):
    """Data of a job stream's `preview` event."""

    image: str = Field(description="The preview as a data URL (data:image/jpeg;base64,...).")


class CancelledCount(BaseModel):
    cancelled: int = Field(description="Jobs that were waiting or running and are now cancelled.")


class ErrorBody(BaseModel):
    """The one shape of every error the API answers with."""

    error: ErrorDetail


ParamValue = str | int | float
"""A resolved parameter value, as bound into a node input."""


class InputRef(BaseModel):
    """One node input of a workflow: where a parameter's value goes."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    input: str

    def __str__(self) -> str:
        return f"{self.node_id}.{self.input}"


class Preset(BaseModel):
    """A loaded, validated preset: a workflow template plus where each parameter goes.

    `defaults` holds a value for every bound parameter (presets.yaml's, else the graph's own), so
    a job's parameters are complete before the graph is compiled.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    slug: str
    name: str
    description: str | None = None
    workflow_file: str
    graph: dict[str, dict[str, object]]
    cover_file: str | None = None
    bindings: dict[str, tuple[InputRef, ...]]
    defaults: dict[str, ParamValue]
    save_nodes: tuple[str, ...]
    """Nodes with a `filename_prefix` input: each job gets its own prefix there."""
    timeout: float | None = None
    """Seconds a job of this preset may run in ComfyUI; None: the gateway's setting."""
