"""The demo's server-side resources: a bucket, a property, an endpoint and an alarm rule.

``iotmp demo`` and ``iotmp server --demo`` add them at start so every server
feature can be tried with a command (README, "The demo"):

* bucket ``environment``, written by the environment sensor every 10 s;
* property ``config`` of the controller, read by it at login and followed live;
* endpoint ``demo_receiver``, a call to :class:`DemoReceiver` (a small HTTP
  server of the demo on 127.0.0.1 that prints what it receives);
* alarm rule ``setpoint_high``: the controller's ``config.setpoint`` above 25
  raises an alarm and calls the endpoint.

Seeding is idempotent: what exists already (from an earlier run, perhaps
changed by the user) is kept; only the receiver's URL, new on every run, is
written again.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .alarms.feature import AlarmError
from .buckets import BucketError
from .config import DEMO_USER
from .endpoints import EndpointError

if TYPE_CHECKING:
    from .app import IotmpServer

_LOGGER = logging.getLogger(__name__)

BUCKET: Final = "environment"
CONTROLLER: Final = "controller"
PROPERTY: Final = "config"
ENDPOINT: Final = "demo_receiver"
RULE: Final = "setpoint_high"
SETPOINT_LIMIT: Final = 25
INITIAL_CONFIG: Final = {"setpoint": 21.5, "fan_speed": 40, "mode": "auto"}
MAX_BODY: Final = 65_536
KEPT_CALLS: Final = 50


class DemoReceiver:
    """An HTTP server on 127.0.0.1 that records and reports every request it gets.

    ``GET /`` lists the last calls as JSON; any other request is recorded and
    answered ``{"received": true}``.
    """

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.calls: deque[dict[str, Any]] = deque(maxlen=KEPT_CALLS)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/", self._list)
        app.router.add_route("*", "/{path:.*}", self._record)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _list(self, _request: web.Request) -> web.Response:
        return web.json_response(list(self.calls))

    async def _record(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": "body too large"}, status=413)
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        self.calls.append({"method": request.method, "path": request.path, "body": body})
        self.report(f"demo receiver: {request.method} {request.path} {text[:300]}")
        return web.json_response({"received": True})


async def seed_demo_resources(server: IotmpServer, receiver_url: str) -> None:
    """Add the demo's bucket, property, endpoint and alarm rule (keeping existing ones)."""
    try:
        await server.buckets.create(
            DEMO_USER,
            BUCKET,
            name="Environment sensor",
            description="written by the env-sensor every 10 s",
            retention={"period": 7, "unit": "days"},
        )
    except BucketError as exc:
        if exc.status != 409:
            raise
    try:
        await server.properties.value(CONTROLLER, PROPERTY)
    except KeyError:
        await server.properties.set_value(CONTROLLER, PROPERTY, dict(INITIAL_CONFIG))
    url = f"{receiver_url}/alarm"
    try:
        await server.endpoints.create(
            DEMO_USER,
            ENDPOINT,
            url=url,
            method="POST",
            body="{{payload}}",
            name="Demo receiver",
            description="the demo's local HTTP receiver (prints each call)",
        )
    except EndpointError as exc:
        if exc.status != 409:
            raise
        # The receiver's port is new on every run: only the URL is written again.
        stored = await server.endpoints.store.get(DEMO_USER, ENDPOINT)
        if stored is not None:
            config = {**stored.config, "url": url}
            await server.endpoints.update(DEMO_USER, ENDPOINT, {"config": config})
    try:
        await server.alarms.create_rule(
            DEMO_USER,
            RULE,
            name="Controller setpoint too high",
            source={
                "type": "device_property",
                "device": CONTROLLER,
                "property": PROPERTY,
                "field": "setpoint",
            },
            condition={"operator": ">", "threshold": SETPOINT_LIMIT, "duration": 0},
            endpoint=ENDPOINT,
        )
    except AlarmError as exc:
        if exc.status != 409:
            raise


async def start_demo_resources(server: IotmpServer, report: Callable[[str], None]) -> DemoReceiver:
    """Start the receiver and seed the resources; the caller closes the receiver."""
    receiver = DemoReceiver(report)
    await receiver.start()
    try:
        await seed_demo_resources(server, receiver.url)
    except BaseException:
        await receiver.close()
        raise
    return receiver


__all__ = ["DemoReceiver", "seed_demo_resources", "start_demo_resources"]
