from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import SETTINGS, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.comfyui_url, s.port, s.data_dir, s.presets_path) == (
        "http://127.0.0.1:8188", 5782, Path("data"), Path("presets.yaml"))
    assert s.database_path == Path("data/gateway.db")
    assert s.uploads_dir == Path("data/uploads")


def test_reads_every_variable() -> None:
    env = {"GATEWAY_COMFYUI_URL": "http://gpu:8188/", "GATEWAY_DATA_DIR": "/srv/d", "GATEWAY_PRESETS": "/p.yaml",
           "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "8000", "GATEWAY_API_KEY": "k",
           "GATEWAY_MAX_IN_FLIGHT": "3", "GATEWAY_JOB_TIMEOUT": "30", "GATEWAY_LOG_LEVEL": "debug",
           "GATEWAY_MAX_QUEUED": "50", "GATEWAY_MAX_ATTEMPTS": "5", "GATEWAY_PREVIEW_METHOD": "TAESD"}
    assert set(env) == {s.env for s in SETTINGS}
    s = Settings.from_env(env)
    assert s == Settings(comfyui_url="http://gpu:8188", data_dir=Path("/srv/d"), presets_path=Path("/p.yaml"),
                         host="127.0.0.1", port=8000, api_key="k", max_in_flight=3, job_timeout=30.0,
                         log_level="DEBUG", max_queued=50, max_attempts=5, preview_method="taesd")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT='eighty' is not valid"),
        ({"GATEWAY_PORT": "70000"}, "between 0 and 65535"),
        ({"GATEWAY_COMFYUI_URL": "localhost:8188"}, "must start with http://"),
        ({"GATEWAY_MAX_IN_FLIGHT": "0"}, "at least 1"),
        ({"GATEWAY_JOB_TIMEOUT": "-1"}, "greater than 0"),
        ({"GATEWAY_LOG_LEVEL": "loud"}, "DEBUG, INFO"),
        ({"GATEWAY_PREVIEW_METHOD": "fancy"}, "none, auto, latent2rgb, taesd"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
