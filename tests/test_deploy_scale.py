"""compose.scale.yaml, checked without a Docker engine: the replicas share one PostgreSQL and one
data volume, the proxy reaches every replica, each replica feeds its own ComfyUI GPU service."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.helpers import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.scale.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
GATEWAYS = sorted(name for name in SERVICES if name.startswith("gateway-"))
COMFYUIS = sorted(name for name in SERVICES if name.startswith("comfyui-"))


def test_replicas_share_the_database_and_the_data_volume() -> None:
    assert len(GATEWAYS) >= 2
    for name in GATEWAYS:
        service = SERVICES[name]
        assert re.fullmatch(r"postgresql://gateway:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/gateway",
                            service["environment"]["GATEWAY_DATABASE_URL"])
        assert "gateway-data:/app/data" in service["volumes"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    postgres = SERVICES["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("gateway", "gateway")


def test_every_replica_feeds_every_comfyui_each_on_its_own_gpu() -> None:
    everyone = ",".join(f"http://{name}:8188" for name in COMFYUIS)
    for name in GATEWAYS:
        assert SERVICES[name]["environment"]["GATEWAY_COMFYUI_URL"] == everyone
        assert {c for c in SERVICES[name]["depends_on"] if c.startswith("comfyui")} == set(COMFYUIS)
    gpus = [SERVICES[name]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for name in COMFYUIS]
    assert len({tuple(ids) for ids in gpus}) == len(COMFYUIS)


def test_only_the_proxy_is_published_and_it_reaches_every_replica() -> None:
    published = [name for name, service in SERVICES.items() if service.get("ports")]
    assert published == ["proxy"]
    config = COMPOSE["configs"]["nginx"]["content"]
    assert sorted(re.findall(r"server (gateway-\d+):5782", config)) == GATEWAYS
    assert "proxy_buffering off" in config  # live events stream through
    assert "$$host" in config  # compose would otherwise read $host as one of its variables
