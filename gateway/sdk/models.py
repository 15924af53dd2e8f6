"""Answers the gateway's own models do not describe: kept as sent, so that the client reads them as they grow."""

from __future__ import annotations

from pydantic import ConfigDict

from gateway.models import PresetSummary


class PresetDetail(PresetSummary):
    """`GET /api/v1/presets/<slug>`: the summary plus each parameter's description (kept as sent)."""

    model_config = ConfigDict(extra="allow")
