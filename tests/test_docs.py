"""The README stays true: every setting documented, the test command is what CI runs."""

from __future__ import annotations

import re

from gateway.__main__ import _parser
from gateway.settings import SETTINGS
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for setting in SETTINGS:
        default = "(none)" if setting.default is None else str(setting.default)
        if isinstance(setting.default, bool):
            default = str(int(setting.default))
        if isinstance(setting.default, float) and setting.default.is_integer():
            default = str(int(setting.default))
        row = re.search(rf"^\| `{setting.env}` \| (.+?) \| (.+?) \|$", README, re.MULTILINE)
        assert row, f"{setting.env} is not in the README's configuration table"
        assert row.group(1).strip("`") == default, setting.env
        assert row.group(2) == setting.help, setting.env


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in README
    assert re.search(r"^\./scripts/test$", ci, re.MULTILINE)


def test_every_command_is_documented() -> None:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"comfy-gateway {name}" in README or name == "serve"
    for words in ("keys create --name", "keys list", "keys revoke"):
        assert f"comfy-gateway {words}" in README
