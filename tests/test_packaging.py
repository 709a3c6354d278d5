"""Packaging checks: manifest.json (hassfest/HACS rules), hacs.json, LICENSE, README.

hassfest and the HACS action run outside this repository's test suite, so the
rules they enforce that we can check offline are mirrored here.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from awesomeversion import AwesomeVersion, AwesomeVersionStrategy

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / "iotmp"

# HACS requires these in manifest.json; hassfest additionally requires iot_class
# and (for custom integrations) version.
REQUIRED_MANIFEST_KEYS = {
    "domain",
    "name",
    "version",
    "codeowners",
    "documentation",
    "issue_tracker",
    "iot_class",
}
IOT_CLASSES = {
    "assumed_state",
    "calculated",
    "cloud_polling",
    "cloud_push",
    "local_polling",
    "local_push",
}
INTEGRATION_TYPES = {
    "device",
    "entity",
    "hardware",
    "helper",
    "hub",
    "service",
    "system",
    "virtual",
}
# HACS_MANIFEST_JSON_SCHEMA keys; extra keys are rejected by HACS.
# ("render_readme" is still in the schema but has no effect in HACS 2.x, so we
# keep it out as well.)
HACS_KEYS = {
    "name",
    "content_in_root",
    "zip_release",
    "filename",
    "hide_default_branch",
    "country",
    "homeassistant",
    "hacs",
    "persistent_directory",
}
MIN_HOME_ASSISTANT = "2025.4.0"


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(name="manifest")
def manifest_fixture() -> dict[str, Any]:
    data = _load_json(INTEGRATION / "manifest.json")
    assert isinstance(data, dict)
    return data


def test_manifest_required_keys(manifest: dict[str, Any]) -> None:
    missing = REQUIRED_MANIFEST_KEYS - manifest.keys()
    assert not missing, f"manifest.json lacks {sorted(missing)}"
    assert manifest["domain"] == INTEGRATION.name == "iotmp"
    assert manifest["name"] == "IOTMP"
    assert manifest["iot_class"] in IOT_CLASSES
    assert manifest["integration_type"] in INTEGRATION_TYPES
    assert isinstance(manifest["codeowners"], list)
    assert manifest["codeowners"]
    assert all(re.fullmatch(r"@[\w.-]+(/[\w.-]+)?", o) for o in manifest["codeowners"])
    for key in ("documentation", "issue_tracker"):
        assert re.fullmatch(r"https://\S+", manifest[key]), key
    assert isinstance(manifest.get("requirements", []), list)
    assert isinstance(manifest.get("loggers", []), list)


def test_manifest_key_order(manifest: dict[str, Any]) -> None:
    """Hassfest: 'domain', 'name', then the remaining keys alphabetically."""
    keys = list(manifest)
    expected = ["domain", "name", *sorted(k for k in keys if k not in ("domain", "name"))]
    assert keys == expected, "Manifest keys are not sorted correctly"


def test_manifest_version(manifest: dict[str, Any]) -> None:
    # Same strategies Home Assistant's loader requires before it loads a
    # custom integration (homeassistant/loader.py).
    version = AwesomeVersion(
        manifest["version"],
        ensure_strategy=[
            AwesomeVersionStrategy.CALVER,
            AwesomeVersionStrategy.SEMVER,
            AwesomeVersionStrategy.SIMPLEVER,
            AwesomeVersionStrategy.BUILDVER,
            AwesomeVersionStrategy.PEP440,
        ],
    )
    assert version.valid
    # One version for the whole repository: the integration's is the package's.
    assert manifest["version"] == package_version()


def package_version() -> str:
    """``iotmp.__version__`` as written in the checkout (pyproject reads it from there)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["hatch"]["version"]["path"] == "iotmp/__init__.py"
    match = re.search(
        r'^__version__ = "([^"]+)"$', (ROOT / "iotmp" / "__init__.py").read_text(), re.M
    )
    assert match
    return match.group(1)


def test_manifest_requires_the_package_at_its_version(manifest: dict[str, Any]) -> None:
    """Home Assistant installs the integration's library like any other: pinned exactly."""
    assert f"iotmp=={package_version()}" in manifest["requirements"]
    assert "iotmp" in manifest["loggers"]


def test_manifest_config_flow_module(manifest: dict[str, Any]) -> None:
    """Hassfest requires config_flow.py when the manifest declares config_flow."""
    if not manifest.get("config_flow"):
        return
    if not (INTEGRATION / "config_flow.py").exists():
        pytest.skip("config_flow.py not written yet")
    assert (INTEGRATION / "config_flow.py").is_file()


def test_hacs_json() -> None:
    data = _load_json(ROOT / "hacs.json")
    assert isinstance(data, dict)
    extra = data.keys() - HACS_KEYS
    assert not extra, f"hacs.json has keys outside the HACS schema: {sorted(extra)}"
    assert data["name"] == "IOTMP"
    assert data["homeassistant"] == MIN_HOME_ASSISTANT
    assert AwesomeVersion(data["homeassistant"]).valid
    if data.get("zip_release"):
        assert data.get("filename"), "zip_release needs filename"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def test_minimum_leg_tests_declared_minimum() -> None:
    """The minimum test leg runs the Home Assistant release hacs.json declares."""
    declared = AwesomeVersion(_load_json(ROOT / "hacs.json")["homeassistant"])
    tested = AwesomeVersion(_pins(ROOT / "constraints_test_min.txt")["homeassistant"])
    assert (tested.major, tested.minor) == (declared.major, declared.minor)
    latest = AwesomeVersion(_pins(ROOT / "constraints_test.txt")["homeassistant"])
    assert latest > tested


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize(
    ("requirements", "constraints"),
    [
        ("requirements_test_min.txt", "constraints_test_min.txt"),
        ("requirements_test.txt", "constraints_test.txt"),
        ("requirements_test_standalone.txt", "constraints_test_standalone.txt"),
    ],
)
def test_requirements_are_locked(requirements: str, constraints: str) -> None:
    """Every direct requirement has an exact version in the leg's constraints file.

    After adding or bumping one, run ``scripts/setup --relock`` (see docs/development.md).
    """
    lines = (ROOT / requirements).read_text(encoding="utf-8").splitlines()
    assert f"-c {constraints}" in [line.split("#", 1)[0].strip() for line in lines]
    locked = {_normalize(name): version for name, version in _pins(ROOT / constraints).items()}
    for line in lines:
        spec = line.split("#", 1)[0].strip()
        if not spec or spec.startswith("-"):
            continue
        name = _normalize(re.split(r"[\s\[=<>!~;]", spec, maxsplit=1)[0])
        assert name in locked, f"{name} is missing from {constraints}"
        if "==" in spec:
            assert spec.split("==", 1)[1].strip() == locked[name], name


def test_license_and_readme() -> None:
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    assert "Copyright (c) 2026 iotmp for Home Assistant contributors" in license_text
    assert (ROOT / "README.md").read_text(encoding="utf-8").strip()


def test_strings_match_english_translation() -> None:
    """Custom integrations load translations/en.json at runtime, not strings.json."""
    strings = INTEGRATION / "strings.json"
    english = INTEGRATION / "translations" / "en.json"
    if not (strings.exists() and english.exists()):
        pytest.skip("strings.json or translations/en.json not written yet")
    assert _load_json(strings) == _load_json(english), (
        "translations/en.json must be an exact copy of strings.json"
    )
