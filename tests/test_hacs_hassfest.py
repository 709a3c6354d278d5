"""What hassfest and the HACS action would check, that tests/test_packaging.py does not.

test_packaging.py already covers the manifest keys, their order and version, hacs.json
keys and minimum version, the LICENSE heading and strings.json == translations/en.json.
This file adds, offline and by reading the code (AST) rather than running it:

- translations (hassfest ``translations``): the schema of strings.json and the rules on
  every string (no URLs, HTML, single-quoted placeholders, surrounding spaces; valid
  placeholder names; key patterns; data_description keys within data);
- every translation key the code uses exists: config / options flow steps, menu options,
  errors, abort reasons, entity translation keys, exception keys, selector keys, and the
  placeholders those strings use are passed by the code;
- services (hassfest ``services``): services.yaml against the registered actions, both
  ways, valid selectors, and names / descriptions in the translations;
- icons (hassfest ``icons``): icons.json schema, and its keys are used;
- dependencies (hassfest ``dependencies``) and ``config_schema``;
- HACS: one integration in custom_components/, brand icons with the right pixel sizes
  (PNG header, no Pillow), an OSI licence text GitHub can detect, the minimum Home
  Assistant in hacs.json not above the one this leg runs.

Rules mirror home-assistant/core ``script/hassfest/{translations,services,icons,
dependencies,config_schema}.py`` and hacs/integration ``validate/``.
"""

from __future__ import annotations

import ast
import json
import re
import string
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from awesomeversion import AwesomeVersion

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / "iotmp"
DOMAIN = "iotmp"
PLATFORM_MODULES = {
    "binary_sensor",
    "button",
    "light",
    "number",
    "sensor",
    "switch",
    "text",
}  # entity platforms this integration has (module name == platform)
MAPPING_PLATFORMS = PLATFORM_MODULES  # what mapping.py may choose (architecture.md)

# --- hassfest translations.py
RE_TRANSLATION_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
RE_SLUG = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")  # cv.slug (slugify(value) == value)
RE_COMBINED_REFERENCE = re.compile(r"(.+\[%)|(%\].+)")
RE_PLACEHOLDER_IN_SINGLE_QUOTES = re.compile(r"'{\w+}'")
RE_HTML = re.compile(r"<[a-z].*?>", re.IGNORECASE)  # cv.string_with_no_html
RE_URL = re.compile(
    r"(((ftp|ftps|scp|http|https|mqtt|mqtts|socket|socks5):\/\/|www\.)"
    r"[a-z0-9]+([\-\.]{1}[a-z0-9]+)*\.[a-z]{2,5}(:[0-9]{1,5})?(\/.*)?)",
    re.IGNORECASE,
)
TOP_LEVEL_KEYS = {
    "title",
    "config",
    "config_subentries",
    "options",
    "preview_features",
    "selector",
    "device_automation",
    "system_health",
    "config_panel",
    "application_credentials",
    "issues",
    "entity_component",
    "device",
    "entity",
    "exceptions",
    "services",
    "conditions",
    "triggers",
    "conversation",
    "common",
}
FLOW_KEYS = {
    "flow_title",
    "step",
    "error",
    "abort",
    "progress",
    "create_entry",
    "initiate_flow",
}
STEP_KEYS = {
    "title",
    "description",
    "data",
    "data_description",
    "menu_options",
    "menu_option_descriptions",
    "submit",
    "sections",
}
# --- hassfest dependencies.py: components any integration may import
ALLOWED_USED_COMPONENTS = {
    "alarm_control_panel", "assist_satellite", "binary_sensor", "button", "calendar",
    "camera", "climate", "conversation", "cover", "date", "datetime", "device_tracker",
    "event", "fan", "geo_location", "humidifier", "image", "image_processing",
    "lawn_mower", "light", "lock", "media_player", "notify", "number", "remote", "scene",
    "select", "sensor", "siren", "stt", "switch", "text", "time", "todo", "tts", "update",
    "vacuum", "valve", "wake_word", "water_heater", "weather", "air_quality",
    "alert", "automation", "default_config", "device_automation", "frontend", "group",
    "homeassistant", "input_boolean", "input_button", "input_datetime", "input_number",
    "input_select", "input_text", "media_source", "onboarding", "panel_custom",
    "persistent_notification", "person", "script", "shopping_list", "sun", "system_health",
    "system_log", "timer", "webhook", "websocket_api", "zone", "mjpeg", "stream",
}  # fmt: skip
FIELD_KEYS = {
    "example",
    "default",
    "required",
    "advanced",
    "selector",
    "filter",
    "name",
    "description",
}
RE_MDI = re.compile(r"^mdi:[-a-z0-9]+$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- helpers


@cache
def strings() -> dict[str, Any]:
    data = json.loads((INTEGRATION / "strings.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@cache
def manifest() -> dict[str, Any]:
    data = json.loads((INTEGRATION / "manifest.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@cache
def module(name: str) -> ast.Module:
    path = INTEGRATION / f"{name}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def integration_modules() -> list[str]:
    return sorted(
        str(path.relative_to(INTEGRATION).with_suffix("")).replace("/", ".")
        for path in INTEGRATION.glob("*.py")
    )


@cache
def constants() -> dict[str, str]:
    """String constants of const.py (``NAME: Final = "value"`` or ``NAME = "value"``)."""
    found: dict[str, str] = {}
    for node in module("const").body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            found[target.id] = value.value
    return found


def leaves(data: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, string) for every string in a nested dict."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, str):
        yield path, data
    else:
        raise AssertionError(f"{path}: {type(data).__name__} where a string or object belongs")


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def string_values(node: ast.AST | None) -> set[str]:
    """Every string constant inside an expression."""
    if node is None:
        return set()
    return {
        sub.value
        for sub in ast.walk(node)
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str)
    }


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def resolve_strings(expr: ast.expr | None, scope: ast.AST) -> set[str] | None:
    """String values an expression can have: constants in it, or, for a local name,
    in every assignment to that name within ``scope``; None when unknown."""
    if expr is None:
        return None
    if isinstance(expr, ast.Name):
        values: set[str] = set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == expr.id for t in node.targets
            ):
                values |= string_values(node.value)
        return values or None
    found = string_values(expr)
    return found or None


def resolve_dict_keys(expr: ast.expr | None, scope: ast.AST) -> set[str] | None:
    """Keys of a dict literal (following ``**name`` and a local name); None if unknown."""
    if expr is None:
        return set()
    if isinstance(expr, ast.Name):
        for node in ast.walk(scope):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets)
                and isinstance(node.value, ast.Dict)
            ):
                return resolve_dict_keys(node.value, scope)
        return None
    if not isinstance(expr, ast.Dict):
        return None
    keys: set[str] = set()
    for key, value in zip(expr.keys, expr.values, strict=True):
        if key is None:  # **other
            inner = resolve_dict_keys(value, scope)
            if inner is None:
                return None
            keys |= inner
        elif isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.add(key.value)
        else:
            return None
    return keys


def enclosing_function(tree: ast.AST, target: ast.AST) -> ast.AST:
    best: ast.AST = tree
    for func in functions(tree):
        inside = any(node is target for node in ast.walk(func))
        if inside and (best is tree or any(node is func for node in ast.walk(best))):
            best = func
    return best


# ------------------------------------------------------------ translations


def test_strings_top_level_schema() -> None:
    """Only keys hassfest's strings schema knows; flows have steps; no config.title."""
    data = strings()
    assert not set(data) - TOP_LEVEL_KEYS, f"unknown keys {sorted(set(data) - TOP_LEVEL_KEYS)}"
    for flow in ("config", "options"):
        if flow not in data:
            continue
        section = data[flow]
        assert not set(section) - FLOW_KEYS - ({"title"} if flow == "options" else set()), (
            f"{flow}: unknown keys {sorted(set(section) - FLOW_KEYS)}"
        )
        assert "title" not in section or flow == "options", (
            "config.title moved to the top level of strings.json (hassfest REMOVED_TITLE_MSG)"
        )
        assert "step" in section, f"{flow} has no step"
        for step_id, step in section["step"].items():
            assert not set(step) - STEP_KEYS, (
                f"{flow}.step.{step_id}: {sorted(set(step) - STEP_KEYS)}"
            )
            extra = set(step.get("data_description", {})) - set(step.get("data", {}))
            assert not extra, f"{flow}.step.{step_id}: data_description keys {extra} not in data"


def test_every_string_follows_hassfest_rules() -> None:
    """No URLs, HTML, single-quoted or invalid placeholders, surrounding spaces."""
    problems = []
    for path, text in leaves(strings()):
        if RE_HTML.search(text):
            problems.append(f"{path}: HTML")
        if RE_PLACEHOLDER_IN_SINGLE_QUOTES.search(text):
            problems.append(f"{path}: placeholder inside single quotes")
        if text != text.strip():
            problems.append(f"{path}: leading or trailing spaces")
        if RE_COMBINED_REFERENCE.search(text):
            problems.append(f"{path}: combined translation reference")
        if RE_URL.search(text):
            problems.append(f"{path}: contains a URL (use a description placeholder): {text!r}")
        try:
            names = placeholders(text)
        except ValueError as err:
            problems.append(f"{path}: bad placeholder syntax ({err})")
            continue
        problems += [
            f"{path}: placeholder {{{n}}} is no identifier" for n in names if not n.isidentifier()
        ]
        no_placeholders = path.startswith("entity.") and ".state" in path
        if no_placeholders and names:
            problems.append(f"{path}: placeholders are not supported in entity states")
    assert not problems, "\n".join(problems)


def test_translation_key_patterns() -> None:
    """Entity, selector, service and exception keys use the patterns hassfest requires."""
    data = strings()
    bad = []
    for platform, keys in data.get("entity", {}).items():
        if not RE_SLUG.match(platform):
            bad.append(f"entity.{platform}")
        bad += [f"entity.{platform}.{k}" for k in keys if not RE_TRANSLATION_KEY.match(k)]
    for key in data.get("exceptions", {}):
        if not RE_SLUG.match(key):
            bad.append(f"exceptions.{key}")
    for name, selector in data.get("selector", {}).items():
        if not (name == "_" or RE_SLUG.match(name)):
            bad.append(f"selector.{name}")
        for part in ("options", "choices", "unit_of_measurement"):
            bad += [
                f"selector.{name}.{part}.{k}"
                for k in selector.get(part, {})
                if not RE_TRANSLATION_KEY.match(k)
            ]
    for service, info in data.get("services", {}).items():
        if not RE_TRANSLATION_KEY.match(service):
            bad.append(f"services.{service}")
        assert {"name", "description"} <= set(info), (
            f"services.{service} needs name and description"
        )
        for field, field_info in info.get("fields", {}).items():
            if not RE_TRANSLATION_KEY.match(field):
                bad.append(f"services.{service}.fields.{field}")
            assert {"name", "description"} <= set(field_info), f"services.{service}.fields.{field}"
    for key, info in data.get("exceptions", {}).items():
        assert set(info) <= {"message"}, f"exceptions.{key}: only 'message' is allowed"
    assert not bad, f"invalid translation keys: {bad}"


# --------------------------------------------------- keys the code uses


def flow_classes() -> dict[str, ast.ClassDef]:
    """Flow classes of config_flow.py by strings.json section ("config" / "options")."""
    found: dict[str, ast.ClassDef] = {}
    for node in module("config_flow").body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {ast.unparse(base) for base in node.bases}
        if any("OptionsFlow" in base for base in bases):
            found["options"] = node
        elif any("ConfigFlow" in base for base in bases):
            found["config"] = node
    assert "config" in found, "config_flow.py has no ConfigFlow class"
    return found


def flow_error_strings() -> set[str]:
    """Keys raised as ``FlowError("key")`` anywhere in config_flow.py (form errors)."""
    return {
        node.args[0].value
        for node in ast.walk(module("config_flow"))
        if isinstance(node, ast.Call)
        and call_name(node) == "FlowError"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def abort_forwarders(cls: ast.ClassDef) -> dict[str, int]:
    """Methods that pass one of their parameters on as an abort reason: name -> index."""
    found: dict[str, int] = {}
    for func in functions(cls):
        params = [arg.arg for arg in func.args.args]
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and call_name(node) == "async_abort":
                reason = keyword(node, "reason")
                if isinstance(reason, ast.Name) and reason.id in params:
                    found[func.name] = params.index(reason.id)
    return found


def used_flow_keys(cls: ast.ClassDef) -> dict[str, set[str]]:
    """Step ids, menu options (step/option), errors, abort reasons a flow class uses."""
    used: dict[str, set[str]] = {"step": set(), "menu": set(), "error": set(), "abort": set()}
    forwarders = abort_forwarders(cls)
    uses_flow_error = any(
        isinstance(node, ast.Name) and node.id == "FlowError" for node in ast.walk(cls)
    )
    if uses_flow_error:
        used["error"] |= flow_error_strings()
    for node in ast.walk(cls):
        if isinstance(node, ast.Call):
            name = call_name(node)
            if name in ("async_show_form", "async_show_menu"):
                step = keyword(node, "step_id")
                assert isinstance(step, ast.Constant), ast.unparse(node)[:120]
                used["step"].add(step.value)
                if name == "async_show_menu":
                    options = keyword(node, "menu_options")
                    used["menu"] |= {f"{step.value}/{o}" for o in string_values(options)}
            elif name in ("async_abort", "_abort_if_unique_id_mismatch"):
                reason = keyword(node, "reason")
                if reason is None:
                    used["abort"].add("unique_id_mismatch")
                elif isinstance(reason, ast.Constant):
                    used["abort"].add(reason.value)
            elif name == "_abort_if_unique_id_configured":
                used["abort"].add("already_configured")
            elif name in forwarders:
                index = forwarders[name] - 1  # without self
                value = node.args[index] if len(node.args) > index else None
                used["abort"] |= string_values(value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "errors":
                    used["error"] |= {
                        v for v in string_values(node.value) if not v.startswith("Unexpected")
                    }
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "base":
                    used["error"] |= {v for v in string_values(value) if v.isidentifier()}
    return used


@pytest.mark.parametrize("section", ["config", "options"])
def test_flow_keys_are_translated(section: str) -> None:
    """Every step, menu option, error and abort reason of the flow is in strings.json."""
    classes = flow_classes()
    if section not in classes:
        pytest.skip(f"no {section} flow")
    used = used_flow_keys(classes[section])
    flow = strings().get(section, {})
    steps = flow.get("step", {})
    missing = [f"{section}.step.{s}" for s in sorted(used["step"]) if s not in steps]
    for item in sorted(used["menu"]):
        step, option = item.split("/")
        if option not in steps.get(step, {}).get("menu_options", {}):
            missing.append(f"{section}.step.{step}.menu_options.{option}")
    missing += [
        f"{section}.error.{e}" for e in sorted(used["error"]) if e not in flow.get("error", {})
    ]
    missing += [
        f"{section}.abort.{a}" for a in sorted(used["abort"]) if a not in flow.get("abort", {})
    ]
    assert not missing, f"used by config_flow.py but missing in strings.json: {missing}"
    assert used["step"], "found no steps: has config_flow.py changed shape?"


@pytest.mark.parametrize("section", ["config", "options"])
def test_flow_placeholders_are_passed(section: str) -> None:
    """Placeholders in a step's texts are passed as description_placeholders by the code."""
    classes = flow_classes()
    if section not in classes:
        pytest.skip(f"no {section} flow")
    cls = classes[section]
    passed: dict[str, set[str] | None] = {}
    all_passed: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Call) and call_name(node) in ("async_show_form", "async_show_menu"):
            step = keyword(node, "step_id")
            assert isinstance(step, ast.Constant)
            keys = resolve_dict_keys(
                keyword(node, "description_placeholders"), enclosing_function(cls, node)
            )
            previous = passed.get(step.value, set())
            passed[step.value] = None if keys is None or previous is None else previous | keys
            all_passed |= keys or set()
    flow = strings().get(section, {})
    problems = []
    for step_id, step in flow.get("step", {}).items():
        keys = passed.get(step_id, set())
        if keys is None:
            continue  # built dynamically; cannot tell
        for path, text in leaves(step, f"{section}.step.{step_id}"):
            missing = placeholders(text) - keys
            if missing:
                problems.append(f"{path} uses {sorted(missing)}; code passes {sorted(keys)}")
    for part in ("error", "abort"):
        for path, text in leaves(flow.get(part, {}), f"{section}.{part}"):
            missing = placeholders(text) - all_passed
            if missing and None not in passed.values():
                problems.append(f"{path} uses {sorted(missing)}, never passed")
    assert not problems, "\n".join(problems)


def entity_translation_keys() -> dict[str, set[str]]:
    """platform -> translation keys set by entity classes / descriptions in its module."""
    used: dict[str, set[str]] = {}
    for name in PLATFORM_MODULES:
        if not (INTEGRATION / f"{name}.py").exists():
            continue
        keys: set[str] = set()
        for node in ast.walk(module(name)):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    attr = (
                        target.attr
                        if isinstance(target, ast.Attribute)
                        else getattr(target, "id", "")
                    )
                    if attr == "_attr_translation_key":
                        keys |= string_values(node.value)
            elif (
                isinstance(node, ast.Call)
                and keyword(node, "translation_domain") is None
                and call_name(node).endswith("EntityDescription")
            ):
                keys |= string_values(keyword(node, "translation_key"))
        if keys:
            used[name] = keys
    return used


def test_entity_translation_keys_exist() -> None:
    """``_attr_translation_key`` / description keys have entity.<platform>.<key> strings."""
    entity = strings().get("entity", {})
    missing = [
        f"entity.{platform}.{key}"
        for platform, keys in sorted(entity_translation_keys().items())
        for key in sorted(keys)
        if key not in entity.get(platform, {})
    ]
    assert not missing, f"missing entity translations: {missing}"


def exception_uses() -> Iterator[tuple[str, ast.Call, set[str] | None, set[str] | None]]:
    """(module, call, possible keys, placeholder keys) for translated exceptions."""
    for name in integration_modules():
        tree = module(name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or keyword(node, "translation_domain") is None:
                continue
            scope = enclosing_function(tree, node)
            keys = resolve_strings(keyword(node, "translation_key"), scope)
            passed = resolve_dict_keys(keyword(node, "translation_placeholders"), scope)
            yield name, node, keys, passed


def test_exception_translations_exist() -> None:
    """Every ``translation_key`` raised with ``translation_domain`` is in exceptions, and its
    message's placeholders are passed."""
    exceptions = strings().get("exceptions", {})
    problems = []
    count = 0
    for name, call, keys, passed in exception_uses():
        where = f"{name}.py:{call.lineno}"
        if keys is None:
            problems.append(f"{where}: cannot tell the translation_key statically")
            continue
        for key in sorted(keys):
            count += 1
            if key not in exceptions:
                problems.append(f"{where}: exceptions.{key} missing")
                continue
            needed = placeholders(exceptions[key].get("message", ""))
            if passed is not None and needed - passed:
                problems.append(f"{where}: exceptions.{key} needs {sorted(needed - passed)}")
    assert not problems, "\n".join(problems)
    assert count, "found no translated exceptions: has the code changed shape?"


def test_no_unused_exception_translations() -> None:
    """Every exceptions.<key> is raised somewhere (stale strings confuse translators)."""
    used = set().union(*(keys or set() for _, _, keys, _ in exception_uses()))
    unused = set(strings().get("exceptions", {})) - used
    assert not unused, f"exceptions never raised: {sorted(unused)}"


def test_selector_translation_keys_exist() -> None:
    """``translation_key`` of selectors (flows) has selector.<key>.options strings."""
    selectors = strings().get("selector", {})
    used = set()
    for name in integration_modules():
        for node in ast.walk(module(name)):
            if isinstance(node, ast.Call) and call_name(node).endswith("SelectorConfig"):
                used |= string_values(keyword(node, "translation_key"))
    missing = [key for key in sorted(used) if "options" not in selectors.get(key, {})]
    assert not missing, f"selector translations missing: {missing}"
    if "platform" in used:
        options = set(selectors["platform"]["options"])
        assert {"auto", *MAPPING_PLATFORMS} <= options, sorted(options)


# ------------------------------------------------------------------ services


@cache
def services_yaml() -> dict[str, Any]:
    data = yaml.safe_load((INTEGRATION / "services.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def registered_services() -> set[str]:
    """Actions the code registers: hass.services.async_register(DOMAIN, NAME, ...) and
    entity services (async_register_entity_service / async_register_platform_entity_service)."""
    names: set[str] = set()
    consts = constants()

    def value(expr: ast.expr) -> str:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name) and expr.id in consts:
            return consts[expr.id]
        raise AssertionError(f"cannot resolve service name {ast.unparse(expr)}")

    for name in integration_modules():
        for node in ast.walk(module(name)):
            if not isinstance(node, ast.Call):
                continue
            func = call_name(node)
            if func == "async_register" and ast.unparse(node.func).endswith(
                "services.async_register"
            ):
                assert len(node.args) >= 2, ast.unparse(node)
                assert ast.unparse(node.args[0]) in ("DOMAIN", repr(DOMAIN)), ast.unparse(node)
                names.add(value(node.args[1]))
            elif func == "async_register_entity_service":
                names.add(value(node.args[0]))
            elif func == "async_register_platform_entity_service":
                names.add(value(node.args[2]))
    return names


def test_services_yaml_matches_registered_actions() -> None:
    """services.yaml describes exactly the actions the code registers."""
    declared = set(services_yaml())
    registered = registered_services()
    assert registered == declared, (
        f"registered but not in services.yaml: {sorted(registered - declared)}; "
        f"in services.yaml but never registered: {sorted(declared - registered)}"
    )


def test_services_are_registered_in_async_setup() -> None:
    """IQS action-setup / hassfest config_schema: actions in async_setup, CONFIG_SCHEMA set."""
    init = module("__init__")
    names = {
        node.name for node in init.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    assigned = {
        target.id
        for node in init.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if "async_setup" in names:
        assert "CONFIG_SCHEMA" in assigned, (
            "async_setup without CONFIG_SCHEMA (hassfest config_schema)"
        )
    if not registered_services():
        return
    assert "async_setup" in names, "actions must be registered in async_setup"
    setup = next(
        n for n in init.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "async_setup"
    )
    called = {call_name(n) for n in ast.walk(setup) if isinstance(n, ast.Call)}
    assert called & {"async_setup_services", "async_register"}, (
        f"async_setup does not register the actions (calls {sorted(called)})"
    )


def test_services_yaml_schema_and_translations() -> None:
    """Fields have valid selectors (Home Assistant's own validation), names and descriptions
    come from strings.json, and no device filter on a target (rejected from 2026.11)."""
    from homeassistant.helpers import selector

    translations = strings().get("services", {})
    for service, raw_schema in services_yaml().items():
        assert RE_SLUG.match(service), service
        schema = raw_schema or {}
        assert set(schema) <= {"target", "fields", "name", "description"}, sorted(schema)
        assert service in translations, f"services.{service} missing in strings.json"
        if schema.get("target"):
            assert "device" not in schema["target"] or "filter" not in (
                schema["target"]["device"] or {}
            ), f"{service}: target with a device filter"
        for field, raw_field in (schema.get("fields") or {}).items():
            field_schema = raw_field or {}
            if "fields" in field_schema:  # a section
                continue
            assert set(field_schema) <= FIELD_KEYS, f"{service}.{field}: {sorted(field_schema)}"
            if "selector" in field_schema:
                selector.validate_selector(field_schema["selector"])
                key = (field_schema["selector"].get("select") or {}).get("translation_key")
                if key:
                    assert key in strings().get("selector", {}), (
                        f"{service}.{field}: selector {key}"
                    )
            assert field in translations[service].get("fields", {}), (
                f"services.{service}.fields.{field} missing in strings.json"
            )
        extra = set(translations[service].get("fields", {})) - set(schema.get("fields") or {})
        assert not extra, f"services.{service}: translated fields not in services.yaml: {extra}"
    stale = set(translations) - set(services_yaml())
    assert not stale, f"translated services not in services.yaml: {stale}"


# --------------------------------------------------------------------- icons


def test_icons_json() -> None:
    """icons.json: known sections, mdi icons, keys the code actually uses."""
    path = INTEGRATION / "icons.json"
    if not path.exists():
        pytest.skip("no icons.json")
    icons = json.loads(path.read_text(encoding="utf-8"))
    assert set(icons) <= {"entity", "services", "exceptions", "issues", "conditions", "triggers"}
    for where, icon in leaves(icons):
        assert RE_MDI.match(icon), f"{where}: {icon!r} is not an mdi: icon"
    used_entities = entity_translation_keys()
    for platform, keys in icons.get("entity", {}).items():
        for key, info in keys.items():
            assert key in used_entities.get(platform, set()), (
                f"icons entity.{platform}.{key} unused"
            )
            assert set(info) <= {"default", "state", "range", "state_attributes"}, info
    for service, info in icons.get("services", {}).items():
        assert service in services_yaml(), f"icon for unknown service {service}"
        assert set(info) <= {"service", "sections"}, info
    for service in services_yaml():
        assert service in icons.get("services", {}), f"service {service} has no icon"


# -------------------------------------------------------------- dependencies


def test_imported_components_are_dependencies() -> None:
    """hassfest dependencies: other integrations the code imports are in the manifest."""
    deps = set(manifest().get("dependencies", [])) | set(manifest().get("after_dependencies", []))
    problems = []
    for name in integration_modules():
        for node in ast.walk(module(name)):
            refs: set[str] = set()
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("homeassistant.components."):
                    refs.add(node.module.split(".")[2])
                elif node.module == "homeassistant.components":
                    refs |= {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                refs |= {
                    alias.name.split(".")[2]
                    for alias in node.names
                    if alias.name.startswith("homeassistant.components.")
                }
            for ref in refs:
                own_platform = (INTEGRATION / f"{ref}.py").is_file() or (INTEGRATION / ref).is_dir()
                if ref not in ALLOWED_USED_COMPONENTS | deps | {DOMAIN} and not own_platform:
                    problems.append(f"{name}.py imports {ref}")
    assert not problems, f"not in dependencies/after_dependencies: {problems}"
    assert not set(manifest().get("dependencies", [])) & set(
        manifest().get("after_dependencies", [])
    )


# ---------------------------------------------------------------------- HACS


def test_one_integration_in_custom_components() -> None:
    """HACS: the repository holds exactly one integration, in custom_components/<domain>."""
    folders = sorted(
        p.name
        for p in (ROOT / "custom_components").iterdir()
        if p.is_dir() and not p.name.startswith("__")
    )
    assert folders == [DOMAIN]


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk."""
    data = path.read_bytes()[:33]
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR" and length == 13, f"{path.name}: no IHDR first"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour


@pytest.mark.parametrize(("name", "size"), [("icon.png", 256), ("icon@2x.png", 512)])
def test_brand_icons(name: str, size: int) -> None:
    """HA 2026.3+ and the HACS brands check read custom_components/iotmp/brand/."""
    path = INTEGRATION / "brand" / name
    assert path.is_file(), f"brand/{name} missing (scripts/draw_brand.py draws it)"
    width, height, depth, colour = png_header(path)
    assert (width, height) == (size, size), f"{name} is {width}x{height}, wants {size}x{size}"
    assert colour in (4, 6), f"{name}: no alpha channel (transparent background wanted)"
    assert depth == 8


@pytest.mark.parametrize(
    ("name", "short_min", "short_max"), [("logo.png", 128, 256), ("logo@2x.png", 256, 512)]
)
def test_brand_logos_if_present(name: str, short_min: int, short_max: int) -> None:
    """Logos are optional (HA falls back to the icon); when present, their sizes fit."""
    path = INTEGRATION / "brand" / name
    if not path.exists():
        pytest.skip(f"no brand/{name}; Home Assistant uses the icon")
    width, height, _, _ = png_header(path)
    assert short_min <= min(width, height) <= short_max


def test_no_unknown_brand_files() -> None:
    """Only the file names Home Assistant looks for."""
    allowed = {
        f"{dark}{kind}{scale}.png"
        for dark in ("", "dark_")
        for kind in ("icon", "logo")
        for scale in ("", "@2x")
    }
    present = {p.name for p in (INTEGRATION / "brand").iterdir()}
    assert present <= allowed, sorted(present - allowed)


def test_license_is_complete_mit_text() -> None:
    """HACS' license check needs an OSI licence GitHub detects (full MIT text, not a stub)."""
    text = " ".join((ROOT / "LICENSE").read_text(encoding="utf-8").split())
    for sentence in (
        "Permission is hereby granted, free of charge, to any person obtaining a copy",
        "The above copyright notice and this permission notice shall be included in all "
        "copies or substantial portions of the Software.",
        'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND',
    ):
        assert sentence in text, f"LICENSE lacks: {sentence}"


def test_hacs_minimum_home_assistant_is_tested() -> None:
    """hacs.json's minimum Home Assistant is not newer than the one this leg runs."""
    from homeassistant.const import __version__ as ha_version

    hacs = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    assert AwesomeVersion(hacs["homeassistant"]) <= AwesomeVersion(ha_version)
