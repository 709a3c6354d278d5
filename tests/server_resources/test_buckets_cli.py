"""``iotmp bucket ...`` against a real server (the CLI's own asyncio loop runs in a thread)."""

from __future__ import annotations

import asyncio
import json

import pytest

from iotmp.cli import main
from iotmp.server.testing import run_test_server


async def test_bucket_commands(capsys: pytest.CaptureFixture[str]) -> None:
    async with run_test_server(user="alice") as server:
        opts = ["--url", server.http_url, "--token", server.token]

        errors: list[str] = []

        async def iotmp(*args: str) -> tuple[int, str]:
            code = await asyncio.to_thread(main, [*args, *opts])
            captured = capsys.readouterr()
            errors.append(captured.err)
            return code, captured.out

        assert await iotmp("bucket", "create", "temps") == (0, "created bucket temps\n")
        code, out = await iotmp(
            "bucket", "create", "lampb", "--device", "lamp", "--resource", "temp", "--interval", "5"
        )
        assert code == 0
        code, out = await iotmp("bucket", "list")
        assert out.splitlines() == [
            "temps                    api",
            "lampb                    device lamp/temp every 5.0 s",
        ]
        assert (await iotmp("bucket", "write", "temps", '{"t": 21.5, "ts": 1721080835304}'))[0] == 0
        assert (await iotmp("bucket", "write", "temps", '[{"t": 22, "ts": 1721080892305}]'))[0] == 0
        code, out = await iotmp("bucket", "read", "temps", "--json", "--sort", "desc")
        assert [json.loads(line) for line in out.splitlines()] == [
            {"ts": 1721080892305, "val": {"t": 22}},
            {"ts": 1721080835304, "val": {"t": 21.5}},
        ]
        code, out = await iotmp("bucket", "read", "temps", "--since", "1721080892000")
        assert code == 0 and out.count("\n") == 1 and '{"t":22}' in out
        code, out = await iotmp("bucket", "export", "temps")
        assert out.splitlines() == [
            '"t";"ts"',
            '21.5;"2024-07-15T22:00:35.304Z"',
            '22;"2024-07-15T22:01:32.305Z"',
        ]
        code, out = await iotmp("bucket", "export", "temps", "--format", "json")
        assert json.loads(out) == [
            {"ts": 1721080835304, "val": {"t": 21.5}},
            {"ts": 1721080892305, "val": {"t": 22}},
        ]
        assert await iotmp("bucket", "delete", "temps") == (0, "deleted bucket temps\n")
        code, _ = await iotmp("bucket", "read", "temps")
        assert code == 1
        assert "bucket not found" in errors[-1]
        code, _ = await iotmp("bucket", "read", "lampb", "--since", "soon")
        assert code == 2
