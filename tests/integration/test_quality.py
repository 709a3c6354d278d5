"""Checks hassfest does not run for custom integrations: our own quality rules."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from custom_components.iotmp.const import PLATFORMS

PACKAGE = Path(__file__).resolve().parents[2] / "custom_components" / "iotmp"
STRINGS: dict[str, Any] = json.loads((PACKAGE / "strings.json").read_text(encoding="utf-8"))

# Every rule of the quality scale (Bronze to Platinum).
RULES = {
    "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
    "config-flow-test-coverage", "dependency-transparency", "docs-actions",
    "docs-conditions", "docs-high-level-description", "docs-installation-instructions",
    "docs-removal-instructions", "docs-triggers", "entity-event-setup", "entity-unique-id",
    "has-entity-name", "runtime-data", "test-before-configure", "test-before-setup",
    "unique-config-entry", "action-exceptions", "config-entry-unloading",
    "docs-configuration-parameters", "docs-installation-parameters", "entity-unavailable",
    "integration-owner", "log-when-unavailable", "parallel-updates",
    "reauthentication-flow", "test-coverage", "devices", "diagnostics", "discovery",
    "discovery-update-info", "docs-data-update", "docs-examples", "docs-known-limitations",
    "docs-supported-devices", "docs-supported-functions", "docs-troubleshooting",
    "docs-use-cases", "dynamic-devices", "entity-category", "entity-device-class",
    "entity-disabled-by-default", "entity-translations", "exception-translations",
    "icon-translations", "reconfiguration-flow", "repair-issues", "stale-devices",
    "async-dependency", "inject-websession", "strict-typing",
}  # fmt: skip


def _source(name: str) -> str:
    return (PACKAGE / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("platform", [str(p) for p in PLATFORMS])
def test_parallel_updates(platform: str) -> None:
    """Every platform sets PARALLEL_UPDATES (0 when read only)."""
    module = importlib.import_module(f"custom_components.iotmp.{platform}")
    assert isinstance(module.PARALLEL_UPDATES, int)
    if platform in ("sensor", "binary_sensor"):
        assert module.PARALLEL_UPDATES == 0


def test_quality_scale_complete() -> None:
    """Every rule is listed; all are done or exempt with a reason (brands: once images exist)."""
    rules = yaml.safe_load(_source("quality_scale.yaml"))["rules"]
    assert set(rules) == RULES
    for name, rule in rules.items():
        status = rule if isinstance(rule, str) else rule["status"]
        if status == "exempt":
            assert rule["comment"], name
        elif name == "brands" and not (PACKAGE / "brand" / "icon.png").exists():
            assert status == "todo"
        else:
            assert status == "done", name


def test_exception_translations_exist() -> None:
    """Every translation_key raised in code has a message under "exceptions"."""
    used: set[str] = set()
    for name in ("coordinator.py", "services.py", "__init__.py"):
        used |= set(re.findall(r'translation_key="(\w+)"', _source(name)))
    used |= set(re.findall(r'key = "(\w+)"', _source("coordinator.py")))
    used |= set(re.findall(r'"(device_offline|resource_not_found)"', _source("coordinator.py")))
    assert used
    assert used <= set(STRINGS["exceptions"]), used - set(STRINGS["exceptions"])


def test_flow_strings_exist() -> None:
    """Errors and abort reasons of the flows are translated."""
    source = _source("config_flow.py")
    errors = set(re.findall(r'FlowError\("(\w+)"\)', source))
    errors |= set(re.findall(r'errors\[[^\]]+\] = "(\w+)"', source))
    aborts = set(re.findall(r'reason="(\w+)"', source))
    config_errors = set(STRINGS["config"]["error"])
    options_errors = set(STRINGS["options"]["error"])
    assert errors <= config_errors | options_errors
    assert aborts <= set(STRINGS["config"]["abort"]) | set(STRINGS["options"]["abort"])
    for step in re.findall(r'step_id="(\w+)"', source):
        assert step in STRINGS["config"]["step"] or step in STRINGS["options"]["step"], step


def test_services_described() -> None:
    """services.yaml fields all have names and descriptions."""
    services = yaml.safe_load(_source("services.yaml"))
    for service, spec in services.items():
        strings = STRINGS["services"][service]
        assert strings["name"]
        assert strings["description"]
        assert set(spec["fields"]) == set(strings["fields"])
    icons = json.loads(_source("icons.json"))
    assert set(icons["services"]) == set(services)


def test_entity_icons_match_translation_keys() -> None:
    """icons.json entity keys are translation keys the platforms use."""
    icons = json.loads(_source("icons.json"))["entity"]
    for platform, keys in icons.items():
        source = _source(f"{platform}.py")
        for key in keys:
            assert f'_attr_translation_key = "{key}"' in source, (platform, key)
            assert key in STRINGS["entity"][platform]


def test_translation_strings_parse_as_home_assistant_parses_them() -> None:
    """HA reads placeholders with string.Formatter; ICU plural syntax breaks it (logs ERROR)."""
    import string

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, str):
            list(string.Formatter().parse(node))  # raises ValueError on bad braces

    walk(STRINGS, "strings")
