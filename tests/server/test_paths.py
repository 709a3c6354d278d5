"""Resource names with ``$`` and ``/`` reach the device however the client quotes them."""

from __future__ import annotations

import pytest
from server_helpers import Lab
from yarl import URL


@pytest.mark.parametrize(
    "path", ["$ota/options", "%24ota/options", "%24ota%2Foptions", "$ota%2foptions"]
)
async def test_quoted_resource_paths(lab: Lab, path: str) -> None:
    url = URL(lab.dev("/resources/") + path, encoded=True)
    async with lab.http.get(url, headers=lab.headers) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"chunk": 8192}
    url = URL(lab.dev("/resources/") + path + "/api", encoded=True)
    async with lab.http.get(url, headers=lab.headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {"out": {"chunk": 8192}}
