"""``iotmp property list|get|set|patch|delete`` against a real server.

The command runs through :func:`iotmp.cli.main` (its own event loop, in a
worker thread) and is judged by its output and exit code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from iotmp.cli import main
from iotmp.server.testing import TestDevice, TestServer, run_test_server


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with run_test_server(devices=[TestDevice("lamp")], user="alice") as running:
        yield running


async def iotmp(
    server: TestServer, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``iotmp ARGS --url ... --token ...``; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    argv = [*args, "--url", server.http_url, "--token", server.token]
    code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_set_get_patch_list_delete(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await iotmp(server, capsys, "property", "set", "lamp", "cfg", '{"a":1,"b":2}')
    assert code == 0
    assert json.loads(out) == {"a": 1, "b": 2}
    code, out, _ = await iotmp(server, capsys, "property", "set", "lamp", "mode", "eco")
    assert (code, out) == (0, "eco\n")  # a bare word is a string

    code, out, _ = await iotmp(server, capsys, "property", "get", "lamp", "mode")
    assert (code, out) == (0, "eco\n")
    code, out, _ = await iotmp(server, capsys, "property", "get", "lamp", "cfg", "--json")
    assert code == 0
    item = json.loads(out)
    assert (item["property"], item["value"]) == ("cfg", {"a": 1, "b": 2})

    code, out, _ = await iotmp(
        server, capsys, "property", "patch", "lamp", "cfg", '{"b":null,"c":3}', "--json"
    )
    assert code == 0
    assert json.loads(out)["value"] == {"a": 1, "c": 3}

    code, out, _ = await iotmp(server, capsys, "property", "list", "lamp")
    assert code == 0
    assert out.splitlines() == ["PROPERTY  VALUE", 'cfg       {"a": 1, "c": 3}', 'mode      "eco"']
    code, out, _ = await iotmp(server, capsys, "property", "list", "lamp", "--json")
    assert [json.loads(line)["property"] for line in out.splitlines()] == ["cfg", "mode"]

    code, out, _ = await iotmp(server, capsys, "property", "delete", "lamp", "mode")
    assert (code, out) == (0, "")
    assert await server.server.properties.get_property("lamp", "mode") is None


async def test_errors_exit_1_or_2_with_a_message(
    server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await iotmp(server, capsys, "property", "get", "lamp", "missing")
    assert code == 1
    assert err.startswith("iotmp property get: ")
    assert "property not found" in err
    code, _, err = await iotmp(server, capsys, "property", "list", "nodev")
    assert (code, "device not found" in err) == (1, True)
    code, _, err = await iotmp(server, capsys, "property", "set", "lamp", "bad id", "1")
    assert (code, "property id must be" in err) == (1, True)
    code, _, err = await iotmp(server, capsys, "property", "set", "lamp", "p", "{broken")
    assert (code, "not valid JSON" in err) == (2, True)
    code, _, _ = await iotmp(server, capsys, "property", "frobnicate", "lamp")
    assert code == 2
    code, out, _ = await iotmp(server, capsys, "property", "list", "lamp")
    assert (code, out) == (0, "lamp has no properties\n")


def test_every_property_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("", "list", "get", "set", "patch", "delete"):
        args = ["property", *([action] if action else []), "--help"]
        assert main(args) == 0
        assert f"usage: iotmp property {action}".rstrip() in capsys.readouterr().out
