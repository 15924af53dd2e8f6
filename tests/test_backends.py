"""The backends: a backends file's checks, names for plain URLs, and the rule that makes weights matter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.backends import BackendSpec, Offer, configured, from_urls, load_backends, parse_backends, wake_order
from gateway.errors import ConfigError
from gateway.settings import Settings

SOURCE = "backends.yaml"


def parse(data: Any) -> tuple[BackendSpec, ...]:
    return parse_backends(data, source=SOURCE, max_in_flight=2)


def test_a_file_names_backends_with_their_limits_and_weights() -> None:
    assert parse({"backends": [
        {"name": "gpu1", "url": "http://gpu1:8188/", "max_in_flight": 4, "weight": 2.5},
        {"name": "gpu2", "url": "https://gpu2"},
    ]}) == (BackendSpec("gpu1", "http://gpu1:8188", 4, 2.5), BackendSpec("gpu2", "https://gpu2", 2, 1.0))


GPU1 = {"name": "gpu1", "url": "http://gpu1:8188"}


@pytest.mark.parametrize(("data", "message"), [
    (None, "backends.yaml: expected a mapping with a `backends` list"),
    ({"backend": []}, "backends.yaml: expected a mapping with a `backends` list"),
    ({"backends": [], "other": 1}, "backends.yaml: unknown key 'other'"),
    ({"backends": []}, "backends.yaml: `backends` must be a list of at least one backend"),
    ({"backends": ["http://gpu1"]}, "backends.yaml: backends[0]: expected a mapping with name and url, not str"),
    ({"backends": [GPU1, {**GPU1, "url": "http://gpu2"}]},
     "backends.yaml: backends[1] ('gpu1'): name: 'gpu1' is used twice"),
    ({"backends": [GPU1, {"name": "b", "url": "http://gpu1:8188/"}]},
     "backends.yaml: backends[1] ('b'): url: http://gpu1:8188 is also backend 'gpu1'"),
    ({"backends": [{"url": "http://gpu1"}]}, "backends.yaml: backends[0]: name: must be 1 to 64 letters"),
    ({"backends": [{"name": "a b", "url": "http://gpu1"}]}, "backends[0] ('a b'): name: must be"),
    ({"backends": [{"name": "a"}]}, "backends.yaml: backends[0] ('a'): url: is required"),
    ({"backends": [{"name": "a", "url": "gpu1:8188"}]},
     "backends[0] ('a'): url: 'gpu1:8188' must start with http:// or https://"),
    ({"backends": [{"name": "a", "url": "http://:8188"}]}, "backends[0] ('a'): url: 'http://:8188' has no host"),
    ({"backends": [{"name": "a", "url": "http://gpu1:x"}]}, "url: 'http://gpu1:x' has an invalid port"),
    ({"backends": [{"name": "a", "url": "http://gpu1?x=1"}]}, "url: 'http://gpu1?x=1' must not have a query"),
    ({"backends": [{**GPU1, "max_in_flight": 0}]},
     "backends.yaml: backends[0] ('gpu1'): max_in_flight: must be a whole number of at least 1, not 0"),
    ({"backends": [{**GPU1, "max_in_flight": -1}]}, "max_in_flight: must be a whole number of at least 1, not -1"),
    ({"backends": [{**GPU1, "max_in_flight": 1.5}]}, "max_in_flight: must be a whole number of at least 1, not 1.5"),
    ({"backends": [{**GPU1, "max_in_flight": True}]}, "max_in_flight: must be a whole number"),
    ({"backends": [{**GPU1, "weight": 0}]},
     "backends.yaml: backends[0] ('gpu1'): weight: must be a number greater than 0, not 0"),
    ({"backends": [{**GPU1, "weight": "high"}]}, "weight: must be a number greater than 0, not 'high'"),
    ({"backends": [{**GPU1, "wieght": 2}]},
     "backends.yaml: backends[0] ('gpu1'): unknown field 'wieght' (known: name, url, max_in_flight, weight)"),
])
def test_mistakes_name_the_file_the_entry_and_the_field(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert message in caught.value.message


@pytest.mark.parametrize(("urls", "names"), [
    (["http://gpu1:8188", "http://gpu2:8188"], ["gpu1:8188", "gpu2:8188"]),
    (["http://gpu1", "https://gpu1:8443/comfy"], ["gpu1", "gpu1:8443/comfy"]),
    (["http://gpu1:8188", "https://gpu1:8188"], ["http://gpu1:8188", "https://gpu1:8188"]),  # would clash
])
def test_plain_urls_are_named_after_host_and_port(urls: list[str], names: list[str]) -> None:
    specs = from_urls(urls, max_in_flight=3)
    assert [s.name for s in specs] == names
    assert {(s.max_in_flight, s.weight) for s in specs} == {(3, 1.0)}


def test_the_file_is_read_and_its_problems_name_it(tmp_path: Path) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text("backends:\n  - name: gpu1\n    url: http://gpu1:8188\n    weight: 3\n")
    assert configured(urls=["http://ignored"], file=path, max_in_flight=5) == (
        BackendSpec("gpu1", "http://gpu1:8188", 5, 3.0),)
    path.write_text("backends: [\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        load_backends(path, max_in_flight=2)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.yaml'}: cannot read the backends file"):
        load_backends(tmp_path / "nope.yaml", max_in_flight=2)


@pytest.mark.parametrize("env", [
    {"GATEWAY_BACKENDS_FILE": "b.yaml", "GATEWAY_COMFYUI_URL": "http://a:8188,http://b:8188"},
    {"GATEWAY_BACKENDS_FILE": "b.yaml", "GATEWAY_COMFYUI_URL": "http://a:8188"},
])
def test_a_backends_file_and_comfyui_urls_are_not_both_taken(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_BACKENDS_FILE and GATEWAY_COMFYUI_URL are both set"):
        Settings.from_env(env)


def test_a_backends_file_contradicts_the_managed_comfyui() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_BACKENDS_FILE contradicts GATEWAY_COMFYUI_MANAGED=1"):
        Settings.from_env({"GATEWAY_BACKENDS_FILE": "b.yaml", "GATEWAY_COMFYUI_MANAGED": "1"})
    assert Settings.from_env({"GATEWAY_BACKENDS_FILE": "b.yaml"}).backends_file == Path("b.yaml")


A, B = "a.safetensors", "b.safetensors"


@pytest.mark.parametrize(("offers", "wanted", "order"), [
    ([Offer(1, None), Offer(1, None), Offer(1, None)], set(), [0, 1, 2]),  # configured order
    ([Offer(1, None), Offer(3, None), Offer(2, None)], {A}, [1, 2, 0]),  # heaviest first
    ([Offer(1, None), Offer(3, B), Offer(2, A)], {A}, [2, 1, 0]),  # a loaded checkpoint beats weight
    ([Offer(1, A), Offer(3, B), Offer(2, A)], {A}, [2, 0, 1]),  # then weight among those that have it
    ([Offer(1, A), Offer(3, B), Offer(2, None)], {A, B}, [1, 0, 2]),  # several checkpoints wanted
    ([Offer(0.5, None), Offer(0.5, None)], set(), [0, 1]),
])
def test_backends_are_woken_by_loaded_checkpoint_then_weight(offers: list[Offer], wanted: set[str],
                                                             order: list[int]) -> None:
    assert wake_order(offers, wanted) == order
