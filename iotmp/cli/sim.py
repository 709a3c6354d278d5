r"""``iotmp sim``: run virtual IOTMP devices driven by profile files.

Examples::

    iotmp sim --demo
    iotmp sim --server 127.0.0.1:25204 --user alice --credential pw --profile smart_plug
    iotmp sim --server iot.example.com --transport tls --insecure --user alice \\
        --credential pw --profile my_device.json --count 10 --interval 0.5

See ``docs/devices.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from iotmp.cli.common import stop_on_signals
from iotmp.device import TransportKind
from iotmp.protocol.transport import WEBSOCKET_PATH, client_ssl_context
from iotmp.server.config import default_demo_file
from iotmp.sim.fleet import Fleet, Target, make_devices
from iotmp.sim.profile import ProfileError, builtin_profile_names, builtin_profiles, load_profile
from iotmp.sim.virtual_device import DEFAULT_TICK, VirtualDevice

_LOGGER = logging.getLogger("iotmp.sim")

DEFAULT_PORTS: Final[dict[str, int]] = {"tcp": 25204, "tls": 25206, "ws": 80, "wss": 443}
DEFAULT_DEMO_TIMEOUT: Final = 60.0
EXIT_USAGE: Final = 2
EXIT_FAILED: Final = 1


class CliError(Exception):
    """A user error: printed as one line, exit code in ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


DESCRIPTION = (
    "Run virtual IOTMP devices driven by profile files. Either --demo (the devices "
    "listed by 'iotmp server --demo') or --server with one or more --profile."
)


def epilog() -> str:
    """Help text after the options: the built-in profiles."""
    return (
        f"Built-in profiles: {', '.join(builtin_profile_names())}, photocell (MQTT). "
        "Profile format and more examples: docs/devices.md."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``iotmp sim``'s options to ``parser``."""
    mode = parser.add_argument_group("what to run")
    mode.add_argument(
        "--demo",
        action="store_true",
        help="run every device listed in the demo file written by 'iotmp server --demo'",
    )
    mode.add_argument(
        "--demo-file",
        type=Path,
        metavar="FILE",
        help=f"demo file to read (default {default_demo_file()})",
    )
    mode.add_argument(
        "--demo-timeout",
        type=float,
        default=DEFAULT_DEMO_TIMEOUT,
        metavar="SECONDS",
        help=(
            "how long --demo waits for the demo file to appear "
            f"(default {DEFAULT_DEMO_TIMEOUT:g}; 0 = do not wait)"
        ),
    )
    mode.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME|FILE",
        help="built-in profile name or profile file (.json/.yaml); repeat for several",
    )
    mode.add_argument(
        "--list-profiles", action="store_true", help="list the built-in profiles and exit"
    )

    conn = parser.add_argument_group("connection (with --server)")
    conn.add_argument(
        "--server",
        metavar="HOST[:PORT]|URL",
        help=(
            "IOTMP server: HOST[:PORT] (default port 25204 tcp, 25206 tls, 80 ws, 443 wss) "
            "or a ws:// / wss:// URL"
        ),
    )
    conn.add_argument("--user", help="account the devices belong to")
    conn.add_argument(
        "--device-id", help="device id (default: the profile's; only with one --profile)"
    )
    conn.add_argument("--name", help="device display name (only with one --profile)")
    conn.add_argument("--credential", help="device credential (the same for every device)")
    conn.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="run N devices per profile, ids suffixed -1..-N (default 1)",
    )
    conn.add_argument(
        "--transport",
        choices=("tcp", "tls", "ws", "wss"),
        help="tcp (default), tls, ws or wss (WebSocket at /iotmp)",
    )
    conn.add_argument(
        "--insecure",
        action="store_true",
        help="accept any TLS certificate (self-signed servers), like the reference devices",
    )
    conn.add_argument("--cafile", metavar="PEM", help="trust this CA / certificate for TLS")

    sim = parser.add_argument_group("simulation")
    sim.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_TICK,
        metavar="SECONDS",
        help=f"behaviour tick (default {DEFAULT_TICK:g}); profiles' 'every' counts these ticks",
    )
    sim.add_argument("--seed", type=int, help="random seed (reproducible physics)")
    sim.add_argument(
        "--keep-alive",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="keep-alive interval (default 60, announced to the server when changed)",
    )
    sim.add_argument(
        "--reconnect-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="wait between reconnect attempts (default 5, like the reference devices)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log protocol details (debug)")


# ---------------------------------------------------------------------------- targets


def parse_server(server: str, transport: str | None) -> Target:
    """Turn ``--server`` (HOST[:PORT], [V6]:PORT or a URL) and ``--transport`` into a Target."""
    if "://" in server:
        parts = urlsplit(server)
        scheme = parts.scheme.lower()
        kinds = {"ws": "ws", "wss": "wss", "tcp": "tcp", "iotmp": "tcp", "tls": "tls"}
        kinds["iotmps"] = "tls"
        if scheme not in kinds:
            raise CliError(f"--server: unsupported URL scheme {scheme!r} (use ws://, wss://)")
        kind = kinds[scheme]
        if transport is not None and transport != kind:
            raise CliError(f"--server {server} contradicts --transport {transport}")
        try:
            port = parts.port
        except ValueError as err:
            raise CliError(f"--server: {err}") from None
        host = parts.hostname
        if not host:
            raise CliError(f"--server: no host in {server!r}")
        if kind in ("ws", "wss"):
            path = parts.path or WEBSOCKET_PATH
            netloc = parts.netloc
            return Target(host, port, _kind(kind), url=f"{kind}://{netloc}{path}")
        return Target(host, port or DEFAULT_PORTS[kind], _kind(kind))
    kind = transport or "tcp"
    if server.startswith("["):  # [IPv6]:PORT
        end = server.find("]")
        rest = server[end + 1 :] if end > 0 else "?"
        if end < 0 or (rest and not rest.startswith(":")):
            raise CliError(f"--server: cannot parse {server!r}")
        host, port_text = server[1:end], rest[1:]
    elif server.count(":") == 1:
        host, port_text = server.split(":")
    else:  # a host name, or a bare IPv6 address
        host, port_text = server, ""
    if not host:
        raise CliError("--server: empty host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise CliError(f"--server: bad port {port_text!r}")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[kind]
    if kind in ("ws", "wss"):
        shown = f"[{host}]" if ":" in host else host
        return Target(host, port, _kind(kind), url=f"{kind}://{shown}:{port}{WEBSOCKET_PATH}")
    return Target(host, port, _kind(kind))


def _kind(kind: str) -> TransportKind:
    if kind == "tcp":
        return "tcp"
    if kind == "tls":
        return "tls"
    if kind == "ws":
        return "ws"
    return "wss"


def with_tls(target: Target, *, insecure: bool, cafile: str | None) -> Target:
    """Add an SSL context to TLS / wss targets."""
    if target.transport not in ("tls", "wss"):
        return target
    try:
        context = client_ssl_context(verify=not insecure, cafile=cafile)
    except (OSError, ValueError) as err:
        raise CliError(f"--cafile {cafile}: {err}") from None
    return Target(
        target.host,
        target.port,
        target.transport,
        ssl_context=context,
        server_hostname=target.server_hostname,
        url=target.url,
    )


# ---------------------------------------------------------------------------- demo file


@dataclass(slots=True)
class DemoSetup:
    """What the demo file says."""

    path: Path
    user: str
    host: str
    http_url: str
    tcp_port: int | None
    tls_port: int | None
    devices: list[dict[str, Any]] = field(default_factory=list)
    tls_cert: str | None = None


def parse_demo(path: Path, data: Any) -> DemoSetup:
    """Validate the demo document; CliError names what is wrong."""
    if not isinstance(data, dict):
        raise CliError(f"{path}: not a demo file (expected a JSON object)", EXIT_FAILED)
    user = data.get("user")
    http_url = data.get("http_url")
    devices = data.get("devices")
    if not isinstance(user, str) or not isinstance(http_url, str) or not isinstance(devices, list):
        raise CliError(f"{path}: demo file lacks 'user', 'http_url' or 'devices'", EXIT_FAILED)
    for i, entry in enumerate(devices):
        if not (
            isinstance(entry, dict)
            and all(isinstance(entry.get(k), str) for k in ("id", "credential", "profile"))
        ):
            raise CliError(
                f"{path}: devices[{i}] needs string 'id', 'credential' and 'profile'", EXIT_FAILED
            )
    host = data.get("host") or urlsplit(http_url).hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: connect locally
        host = "127.0.0.1"
    config = data.get("config")
    cert = config.get("tls_cert") if isinstance(config, dict) else None
    ports = [data.get("tcp_port"), data.get("tls_port")]
    tcp_port, tls_port = (
        p if isinstance(p, int) and not isinstance(p, bool) else None for p in ports
    )
    return DemoSetup(
        path=path,
        user=user,
        host=str(host),
        http_url=http_url,
        tcp_port=tcp_port,
        tls_port=tls_port,
        devices=devices,
        tls_cert=cert if isinstance(cert, str) else None,
    )


def _read_json(path: Path) -> Any:
    """Read a small JSON file (sync: a few hundred bytes, not worth a thread)."""
    return json.loads(path.read_text(encoding="utf-8"))


async def wait_for_demo_file(path: Path, timeout: float, stop: asyncio.Event) -> DemoSetup:  # noqa: ASYNC109
    """Read the demo file, waiting up to ``timeout`` s for it to appear (and be complete)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    announced = False
    problem = "does not exist"
    while True:
        try:
            data = _read_json(path)
        except FileNotFoundError:
            problem = "does not exist"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problem = f"is not readable JSON ({err})"
        else:
            return parse_demo(path, data)
        if time.monotonic() >= deadline or stop.is_set():
            raise CliError(
                f"demo file {path} {problem} after waiting {timeout:g} s. Start the demo server "
                "first: iotmp server --demo (or pass --demo-file / --demo-timeout).",
                EXIT_FAILED,
            )
        if not announced:
            _LOGGER.info(
                "waiting up to %g s for the demo file %s (written by 'iotmp server --demo')",
                timeout,
                path,
            )
            announced = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(0.25, max(0.0, deadline - time.monotonic()))):
                await stop.wait()


def demo_target(
    demo: DemoSetup, transport: str | None, insecure: bool, cafile: str | None
) -> Target:
    """Where the demo devices connect."""
    kind = transport or "tcp"
    if kind == "tcp":
        if demo.tcp_port is None:
            raise CliError(f"{demo.path}: the demo server has no TCP listener", EXIT_FAILED)
        return Target(demo.host, demo.tcp_port, "tcp")
    if kind == "tls":
        if demo.tls_port is None:
            raise CliError(f"{demo.path}: the demo server has no TLS listener", EXIT_FAILED)
        target = Target(demo.host, demo.tls_port, "tls")
    else:
        url = demo.http_url.rstrip("/")
        scheme = "wss" if url.startswith("https") else "ws"
        url = scheme + url[url.index(":") :] + WEBSOCKET_PATH
        target = Target(demo.host, None, _kind(scheme), url=url)
    if cafile is None and not insecure and demo.tls_cert:
        cafile = demo.tls_cert
        # The demo certificate names localhost / 127.0.0.1; accept it without a hostname match.
        if target.transport in ("tls", "wss"):
            context = client_ssl_context(verify=True, cafile=cafile)
            context.check_hostname = False
            return Target(target.host, target.port, target.transport, context, url=target.url)
    return with_tls(target, insecure=insecure, cafile=cafile)


# ---------------------------------------------------------------------------- logging


class _ConnectionFailures(logging.Filter):
    """Let through the device library's "connection failed" lines, once per new reason."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if "connection failed" not in str(record.msg):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        key = str(args[0]) if args else ""
        text = record.getMessage()
        if self.last.get(key) == text:
            return False
        self.last[key] = text
        return True


def setup_logging(verbose: bool) -> _ConnectionFailures | None:
    """One line per event on stderr; protocol chatter only with ``--verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        if verbose
        else "%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("iotmp.sim").setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        return None
    failures = _ConnectionFailures()
    device_logger = logging.getLogger("iotmp.device.device")
    device_logger.setLevel(logging.INFO)
    device_logger.addFilter(failures)
    return failures


# ---------------------------------------------------------------------------- main


def _check_numbers(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise CliError("--count must be at least 1")
    if not args.interval > 0:
        raise CliError("--interval must be a positive number of seconds")
    if not args.keep_alive > 0:
        raise CliError("--keep-alive must be positive")
    if args.reconnect_delay < 0:
        raise CliError("--reconnect-delay must not be negative")


def build_from_args(args: argparse.Namespace) -> tuple[list[VirtualDevice], Target]:
    """Devices and target for ``--server`` mode."""
    if not args.profile:
        raise CliError("give --profile NAME|FILE (or use --demo); see --list-profiles")
    if not args.user:
        raise CliError("--user is required with --server")
    if not args.credential:
        raise CliError("--credential is required with --server")
    if (args.device_id or args.name) and len(args.profile) > 1:
        raise CliError("--device-id / --name only work with a single --profile")
    try:
        profiles = [load_profile(ref) for ref in args.profile]
    except ProfileError as err:
        raise CliError(str(err)) from None
    target = with_tls(
        parse_server(args.server, args.transport), insecure=args.insecure, cafile=args.cafile
    )
    devices: list[VirtualDevice] = []
    for index, profile in enumerate(profiles):
        devices.extend(
            make_devices(
                profile,
                user=args.user,
                credential=args.credential,
                count=args.count,
                device_id=args.device_id,
                name=args.name,
                seed=None if args.seed is None else args.seed + 1000 * index,
                tick=args.interval,
                keep_alive=args.keep_alive,
                reconnect_delay=args.reconnect_delay,
            )
        )
    return devices, target


def build_from_demo(
    args: argparse.Namespace, demo: DemoSetup
) -> tuple[list[VirtualDevice], Target]:
    """Devices and target for ``--demo`` mode."""
    target = demo_target(demo, args.transport, args.insecure, args.cafile)
    devices: list[VirtualDevice] = []
    for index, entry in enumerate(demo.devices):
        try:
            profile = load_profile(entry["profile"], base_dir=demo.path.parent)
        except ProfileError as err:
            raise CliError(f"{demo.path}: device {entry['id']!r}: {err}", EXIT_FAILED) from None
        devices.append(
            VirtualDevice(
                profile,
                user=demo.user,
                credential=entry["credential"],
                device_id=entry["id"],
                name=entry.get("name") or None,
                tick=args.interval,
                seed=None if args.seed is None else args.seed + index,
                keep_alive=args.keep_alive,
                reconnect_delay=args.reconnect_delay,
            )
        )
    return devices, target


async def run(args: argparse.Namespace, failures: _ConnectionFailures | None = None) -> int:
    """Run until Ctrl-C / SIGTERM; returns the exit code."""
    stop = asyncio.Event()
    with stop_on_signals(stop):
        if args.demo:
            demo = await wait_for_demo_file(
                args.demo_file or default_demo_file(), args.demo_timeout, stop
            )
            devices, target = build_from_demo(args, demo)
            user = demo.user
        else:
            devices, target = build_from_args(args)
            user = args.user
        if not devices:
            raise CliError("no devices to run", EXIT_FAILED)

        def report(device: VirtualDevice, up: bool, detail: str) -> None:
            if up:
                if failures is not None:
                    failures.last.pop(device.device_id, None)
                _LOGGER.info("%s: connected (%s)", device.device_id, device.profile.name)
            else:
                _LOGGER.info("%s: disconnected (%s)", device.device_id, detail)

        for device in devices:
            device.on_connection = report
        fleet = Fleet(devices)
        _LOGGER.info(
            "running %d device(s) as user %s against %s (tick %g s); Ctrl-C stops",
            len(devices),
            user,
            target.describe(),
            args.interval,
        )
        await fleet.start(target)
        try:
            await stop.wait()
        finally:
            _LOGGER.info("stopping %d device(s)", len(devices))
            await fleet.stop()
        return 0


def run_photocell(args: argparse.Namespace) -> int:
    """``--profile photocell``: the Adafruit IO example over MQTT (paho-mqtt, not IOTMP)."""
    try:
        from iotmp.sim.photocell import DEFAULT_MQTT_PORT, Photocell  # noqa: PLC0415
    except ImportError:
        print("iotmp sim: the photocell needs the iotmp[mqtt] extra", file=sys.stderr)
        return EXIT_USAGE
    if not (args.server and args.user and args.credential):
        print(
            "iotmp sim: photocell needs --server HOST[:PORT] --user --credential", file=sys.stderr
        )
        return EXIT_USAGE
    host, _, port = args.server.rpartition(":") if ":" in args.server else (args.server, "", "")
    photocell = Photocell(
        host,
        int(port) if port.isdigit() else DEFAULT_MQTT_PORT,
        args.user,
        args.credential,
        interval=args.interval,
        seed=args.seed,
    )
    print(f"photocell: publishing {photocell.photocell_topic} to {host}:{photocell.port}")
    try:
        photocell.run()
    except KeyboardInterrupt:
        photocell.stop()
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run ``iotmp sim`` with parsed arguments; returns the exit code."""
    if args.profile == ["photocell"]:
        return run_photocell(args)
    if args.list_profiles:
        for name, profile in builtin_profiles().items():
            resources = ", ".join(f"{s.name}({s.kind})" for s in profile.resources)
            print(f"{name:20} id {profile.device_id:12} {resources}")
        return 0
    try:
        _check_numbers(args)
        if args.demo and args.server:
            raise CliError("--demo and --server cannot be combined")
        if args.demo and (args.profile or args.device_id or args.count != 1):
            raise CliError("--demo takes its devices from the demo file (no --profile/--count)")
        if not args.demo and not args.server:
            raise CliError("give --demo, or --server HOST[:PORT] with --profile")
    except CliError as err:
        print(f"iotmp sim: {err}", file=sys.stderr)
        return err.code
    failures = setup_logging(args.verbose)
    try:
        return asyncio.run(run(args, failures))
    except CliError as err:
        print(f"iotmp sim: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 0
