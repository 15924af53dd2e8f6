from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import SETTINGS, Settings, s3_problem

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


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
           "GATEWAY_MAX_QUEUED": "50", "GATEWAY_MAX_ATTEMPTS": "5", "GATEWAY_PREVIEW_METHOD": "TAESD",
           "GATEWAY_COMFYUI_MANAGED": "0", "GATEWAY_COMFYUI_DIR": "/opt/ComfyUI", "GATEWAY_COMFYUI_PYTHON": "/opt/py",
           "GATEWAY_COMFYUI_PORT": "8190", "GATEWAY_COMFYUI_ARGS": "--cpu --preview-method 'auto'",
           "GATEWAY_IDEMPOTENCY_HOURS": "2",
           "GATEWAY_WEBHOOK_URL": "https://hooks.example.com/x", "GATEWAY_WEBHOOK_SECRET": SECRET,
           "GATEWAY_WEBHOOK_ON_START": "yes", "GATEWAY_WEBHOOK_MAX_ATTEMPTS": "3", "GATEWAY_WEBHOOK_TIMEOUT": "2.5",
           "GATEWAY_WEBHOOK_BACKOFF": "0.5", "GATEWAY_WEBHOOK_ALLOW_PRIVATE": "true", "GATEWAY_RETENTION_DAYS": "30",
           "GATEWAY_DATABASE_URL": "postgresql://gw:pw@db:5432/gateway", "GATEWAY_REPLICA_LEASE": "12",
           "GATEWAY_LOG_FORMAT": "JSON", "GATEWAY_AFFINITY_MAX_SKIPS": "0", "GATEWAY_AFFINITY_MAX_WAIT": "2.5",
           "GATEWAY_MAX_PRIORITY": "4", "GATEWAY_BACKEND_LOST_AFTER": "5",
           "GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_ENDPOINT_URL": "http://minio:9000/",
           "GATEWAY_S3_REGION": "eu-west-1", "GATEWAY_S3_PREFIX": "/comfy/", "GATEWAY_S3_PUBLIC_URL": "https://cdn.x/",
           "GATEWAY_S3_ACCESS_KEY_ID": "AKIA", "GATEWAY_S3_SECRET_ACCESS_KEY": "secret"}
    assert set(env) | {"GATEWAY_BACKENDS_FILE"} == {s.env for s in SETTINGS}  # that one excludes the URL
    assert Settings.from_env({"GATEWAY_BACKENDS_FILE": "/b.yaml"}).backends_file == Path("/b.yaml")
    s = Settings.from_env(env)
    assert s == Settings(comfyui_url="http://gpu:8188", data_dir=Path("/srv/d"), presets_path=Path("/p.yaml"),
                         host="127.0.0.1", port=8000, api_key="k", max_in_flight=3, job_timeout=30.0,
                         log_level="DEBUG", max_queued=50, max_attempts=5, preview_method="taesd",
                         comfyui_managed=False,
                         comfyui_dir=Path("/opt/ComfyUI"), comfyui_python=Path("/opt/py"), comfyui_port=8190,
                         comfyui_args=("--cpu", "--preview-method", "auto"), idempotency_hours=2.0,
                         webhook_url="https://hooks.example.com/x", webhook_secret=SECRET, webhook_on_start=True,
                         webhook_max_attempts=3, webhook_timeout=2.5, webhook_backoff=0.5,
                         webhook_allow_private=True, retention_days=30,
                         database_url="postgresql://gw:pw@db:5432/gateway", replica_lease=12.0, log_format="json",
                         affinity_max_skips=0, affinity_max_wait=2.5, max_priority=4, backend_lost_after=5.0,
                         s3_bucket="results", s3_endpoint_url="http://minio:9000", s3_region="eu-west-1",
                         s3_prefix="comfy/", s3_public_url="https://cdn.x", s3_access_key_id="AKIA",
                         s3_secret_access_key="secret")


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
        ({"GATEWAY_COMFYUI_MANAGED": "maybe"}, "must be 1 or 0"),
        ({"GATEWAY_COMFYUI_ARGS": "--cpu 'unclosed"}, "GATEWAY_COMFYUI_ARGS=.* is not valid"),
        ({"GATEWAY_LOG_FORMAT": "xml"}, "text or json"),
        ({"GATEWAY_AFFINITY_MAX_SKIPS": "-1"}, "0 or more"),
        ({"GATEWAY_AFFINITY_MAX_WAIT": "0"}, "greater than 0"),
        ({"GATEWAY_MAX_PRIORITY": "11"}, "between 0 and 10"),
        ({"GATEWAY_MAX_PRIORITY": "-1"}, "between 0 and 10"),
        ({"GATEWAY_COMFYUI_MANAGED": "1", "GATEWAY_COMFYUI_URL": "http://gpu:8188"},
         "contradicts GATEWAY_COMFYUI_MANAGED=1: the managed ComfyUI answers at http://127.0.0.1:8188"),
        ({"GATEWAY_WEBHOOK_ON_START": "maybe"}, "must be 1 or 0"),
        ({"GATEWAY_WEBHOOK_SECRET": "whsec_not base64!"}, "whsec_ followed by base64"),
        ({"GATEWAY_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "24 to 64 random bytes"),
        ({"GATEWAY_WEBHOOK_URL": "ftp://x"}, "must start with http://"),
        ({"GATEWAY_RETENTION_DAYS": "-1"}, "0 or more"),
        ({"GATEWAY_DATABASE_URL": "mysql://db/gateway"}, "must start with postgresql://"),
        ({"GATEWAY_REPLICA_LEASE": "0"}, "greater than 0"),
        ({"GATEWAY_S3_BUCKET": "My_Bucket"}, "must be a bucket name"),
        ({"GATEWAY_S3_BUCKET": "ab"}, "must be a bucket name"),
        ({"GATEWAY_S3_BUCKET": "a..b"}, "must be a bucket name"),
        ({"GATEWAY_S3_BUCKET": "bkt", "GATEWAY_S3_ENDPOINT_URL": "minio:9"}, "GATEWAY_S3_ENDPOINT_URL=.* must start"),
        ({"GATEWAY_S3_BUCKET": "bkt", "GATEWAY_S3_PREFIX": "a//b"}, "GATEWAY_S3_PREFIX=.* separated by single"),
        ({"GATEWAY_S3_BUCKET": "bkt", "GATEWAY_S3_PREFIX": "a/../b"}, "GATEWAY_S3_PREFIX"),
        ({"GATEWAY_S3_BUCKET": "bkt", "GATEWAY_S3_PREFIX": "a b"}, "GATEWAY_S3_PREFIX"),
        ({"GATEWAY_S3_BUCKET": "bkt", "GATEWAY_S3_REGION": "EU West"}, "such as us-east-1"),
        ({"GATEWAY_S3_BUCKET": "bkt", "GATEWAY_S3_PUBLIC_URL": "cdn.example.com"}, "GATEWAY_S3_PUBLIC_URL=.* must"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "managed", "url"),
    [
        ({}, False, "http://127.0.0.1:8188"),
        ({"GATEWAY_COMFYUI_MANAGED": "1"}, True, "http://127.0.0.1:8188"),
        ({"GATEWAY_COMFYUI_MANAGED": "yes", "GATEWAY_COMFYUI_PORT": "8190"}, True, "http://127.0.0.1:8190"),
        ({"GATEWAY_COMFYUI_MANAGED": "1", "GATEWAY_COMFYUI_URL": "http://127.0.0.1:8188/"}, True,
         "http://127.0.0.1:8188"),
        ({"GATEWAY_COMFYUI_MANAGED": "off", "GATEWAY_COMFYUI_URL": "http://gpu:8188"}, False, "http://gpu:8188"),
        ({"GATEWAY_COMFYUI_PORT": "8190"}, False, "http://127.0.0.1:8188"),
    ],
)
def test_managed_mode_talks_to_its_own_comfyui(env: dict[str, str], managed: bool, url: str) -> None:
    s = Settings.from_env(env)
    assert (s.comfyui_managed, s.comfyui_url) == (managed, url)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, None),
        ({"GATEWAY_S3_BUCKET": "results"}, None),
        ({"GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_ACCESS_KEY_ID": "k", "GATEWAY_S3_SECRET_ACCESS_KEY": "s"}, None),
        ({"GATEWAY_S3_BUCKET": "my.results", "GATEWAY_S3_ENDPOINT_URL": "http://minio:9000"}, None),
        ({"GATEWAY_S3_BUCKET": "my.results", "GATEWAY_S3_PUBLIC_URL": "https://img.example.com"}, None),
        ({"GATEWAY_S3_ENDPOINT_URL": "http://minio:9000"},
         "GATEWAY_S3_ENDPOINT_URL set without GATEWAY_S3_BUCKET"),
        ({"GATEWAY_S3_REGION": "auto", "GATEWAY_S3_PREFIX": "x"},
         "GATEWAY_S3_REGION, GATEWAY_S3_PREFIX set without GATEWAY_S3_BUCKET"),
        ({"GATEWAY_S3_ACCESS_KEY_ID": "k", "GATEWAY_S3_SECRET_ACCESS_KEY": "s"}, "set without GATEWAY_S3_BUCKET"),
        ({"GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_ACCESS_KEY_ID": "k"}, "go together: set both, or neither"),
        ({"GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_SECRET_ACCESS_KEY": "s"}, "go together"),
        ({"GATEWAY_S3_BUCKET": "my.results"}, "has dots, so its AWS address"),
    ],
)
def test_bad_s3_combinations_are_refused(env: dict[str, str], problem: str | None) -> None:
    if problem is None:
        assert Settings.from_env(env).s3_bucket == env.get("GATEWAY_S3_BUCKET")
    else:
        with pytest.raises(ConfigError, match=problem):
            Settings.from_env(env)


def test_s3_problem_reads_parsed_values() -> None:
    assert s3_problem({"s3_bucket": "b", "s3_access_key_id": "k"}) is not None
    assert s3_problem({"s3_bucket": None, "s3_region": None}) is None


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({}, None),
        ({"GATEWAY_S3_BUCKET": "results"}, "https://results.s3.us-east-1.amazonaws.com"),
        ({"GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_REGION": "eu-central-1"},
         "https://results.s3.eu-central-1.amazonaws.com"),
        ({"GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_ENDPOINT_URL": "http://minio:9000/"}, "http://minio:9000/results"),
        ({"GATEWAY_S3_BUCKET": "results", "GATEWAY_S3_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
          "GATEWAY_S3_PUBLIC_URL": "https://images.example.com/"}, "https://images.example.com"),
    ],
)
def test_image_urls_start_at_the_public_base(env: dict[str, str], base: str | None) -> None:
    assert Settings.from_env(env).s3_public_base == base
