"""``iotmp server``: run the IOTMP server from a config file or with ``--demo``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from iotmp.cli.common import ExitCode, setup_logging, stop_on_signals
from iotmp.cli.event_loop import LOOP_CHOICES, LOOP_HELP, EventLoopError, choose_loop, run_on
from iotmp.cli.log_format import LOG_FORMATS
from iotmp.server.app import IotmpServer
from iotmp.server.certs import (
    CertificateError,
    check_certificate,
    cryptography_available,
    make_self_signed,
)
from iotmp.server.config import (
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    DEFAULT_TCP_PORT,
    DEFAULT_TLS_PORT,
    DEMO_USER,
    ConfigError,
    ServerConfig,
    default_data_dir,
    default_demo_file,
    demo_config,
    demo_document,
    load_config,
    new_demo_secrets,
    read_demo_secrets,
    validate,
)
from iotmp.server.demo_files import short_token, write_private_json
from iotmp.server.demo_resources import start_demo_resources
from iotmp.server.mqtt.settings import (
    DEFAULT_MQTT_PORT,
    DEFAULT_MQTT_TLS_PORT,
    MqttConfig,
    mqtt_available,
)

_LOGGER = logging.getLogger("iotmp.server")


SERVER_GC_THRESHOLD2 = 1000
"""Generation-1 collections between full ones in the ``iotmp server`` process (Python: 10)."""


class ListenError(OSError):
    """A listener could not be opened (port in use, no permission)."""


DESCRIPTION = "IOTMP server with a Thinger.io-compatible REST + WebSocket API."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``iotmp server``'s options to ``parser``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", type=Path, help="configuration file (YAML or JSON)")
    source.add_argument(
        "--demo", action="store_true", help="run with a generated demo configuration"
    )
    parser.add_argument(
        "--demo-file",
        type=Path,
        default=None,
        help=f"where --demo writes its settings (default {default_demo_file()})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=(
            "folder of the database and other state (overrides the config; default "
            f"{default_data_dir()}, with --demo a 'data' folder next to the demo file)"
        ),
    )
    parser.add_argument("--host", help="address to bind (overrides the config)")
    parser.add_argument("--http-port", type=int, help="HTTP port (overrides the config)")
    parser.add_argument("--tcp-port", type=int, help="device TCP port (overrides the config)")
    parser.add_argument("--tls-port", type=int, help="device TLS port (overrides the config)")
    parser.add_argument(
        "--https-port", type=int, help="HTTPS API port (overrides the config; 443 needs the right)"
    )
    parser.add_argument(
        "--no-tls", action="store_true", help="--demo: no TLS listeners (no certificate)"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (default) or json: one JSON object per line, for log shippers",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    parser.add_argument("--loop", choices=LOOP_CHOICES, default="auto", help=LOOP_HELP)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.host is not None:
        changes["host"] = args.host
    if args.http_port is not None:
        changes["http_port"] = args.http_port
    if args.tcp_port is not None:
        changes["tcp_port"] = args.tcp_port
    if args.tls_port is not None:
        changes["tls_port"] = args.tls_port
    if getattr(args, "https_port", None) is not None:
        changes["https_port"] = args.https_port
    if getattr(args, "data_dir", None) is not None:
        changes["data_dir"] = str(args.data_dir.resolve())
    return changes


def _check_tls(cert: str, key: str | None, advice: str) -> None:
    try:
        check_certificate(cert, key)
    except CertificateError as exc:
        raise ConfigError(f"{exc}; {advice}") from None


def prepare_demo(args: argparse.Namespace) -> tuple[ServerConfig, Path, Any]:
    """Demo configuration, the demo file path and the secrets (reused if present)."""
    demo_file: Path = args.demo_file or default_demo_file()
    demo_secrets = read_demo_secrets(demo_file) or new_demo_secrets()
    tls_cert = tls_key = None
    if not args.no_tls and cryptography_available():
        cert = demo_file.parent / "demo-cert.pem"
        key = demo_file.parent / "demo-key.pem"
        if not (cert.exists() and key.exists()):
            make_self_signed(cert, key)
        tls_cert, tls_key = str(cert), str(key)
        _check_tls(tls_cert, tls_key, "delete both files to generate new ones")
    config = demo_config(
        demo_secrets,
        host=args.host or "127.0.0.1",
        http_port=args.http_port if args.http_port is not None else DEFAULT_HTTP_PORT,
        tcp_port=args.tcp_port if args.tcp_port is not None else DEFAULT_TCP_PORT,
        tls_port=args.tls_port if args.tls_port is not None else DEFAULT_TLS_PORT,
        tls_cert=tls_cert,
        tls_key=tls_key,
        https_port=_arg(args, "https_port", DEFAULT_HTTPS_PORT),
    )
    data_dir = getattr(args, "data_dir", None) or demo_file.parent / "data"
    config = replace(config, data_dir=str(Path(data_dir).resolve()))
    mqtt_port = getattr(args, "mqtt_port", -1)  # only `iotmp demo` asks for a broker
    if mqtt_available() and mqtt_port != -1:
        # The demo runs the built-in broker when the iotmp[mqtt] extra is there.
        mqtt = MqttConfig(
            host=config.host,
            port=DEFAULT_MQTT_PORT if mqtt_port is None else mqtt_port,
            tls_port=DEFAULT_MQTT_TLS_PORT if tls_cert and mqtt_port is None else None,
        )
        config = replace(config, mqtt=mqtt)
    return config, demo_file, demo_secrets


def _arg(args: argparse.Namespace, name: str, default: int) -> int:
    value = getattr(args, name, None)
    return default if value is None else int(value)


async def start_server(args: argparse.Namespace) -> tuple[IotmpServer, dict[str, Any] | None]:
    """Build the configuration and start the server.

    With ``--demo`` the demo file is written as well and returned as a
    document (its path is ``document["path"]``). Raises :class:`ConfigError`
    or :class:`OSError` (:class:`ListenError` when a port cannot be opened).
    """
    demo_file: Path | None = None
    demo_secrets: Any = None
    if args.demo:
        config, demo_file, demo_secrets = prepare_demo(args)
    else:
        config = load_config(args.config)
        changes = _overrides(args)
        if changes:
            config = validate(replace(config, **changes))
        if config.tls_enabled and config.tls_cert:
            _check_tls(config.tls_cert, config.tls_key, "fix tls_cert / tls_key")
    server = IotmpServer(config)
    try:
        await server.start()
    except OSError as exc:
        raise ListenError(f"cannot listen: {exc}") from exc
    if demo_file is None:
        return server, None
    token = server.issue_token(DEMO_USER, jti=demo_secrets.token_id)
    document = demo_document(
        server.config,
        demo_secrets,
        http_url=server.http_url,
        tcp_port=server.tcp_port,
        tls_port=server.tls_port,
        token=token,
        https_url=server.https_url,
    )
    write_private_json(demo_file, document)
    return server, {**document, "path": str(demo_file)}


async def run(
    args: argparse.Namespace,
    stop: asyncio.Event | None = None,
    *,
    freeze_startup: bool = False,
) -> int:
    """Start the server and run until SIGINT/SIGTERM (or until ``stop`` is set).

    ``freeze_startup`` (the ``iotmp server`` process): once started, what exists
    (modules, configuration, the device registry) is moved out of the garbage
    collector's sight (:func:`gc.freeze`), and full collections are considered 100
    times less often (:data:`SERVER_GC_THRESHOLD2`): with thousands of devices
    online each one traverses every session (about 0.5 s for 10,000 devices) and
    they ran every few hundred connections.
    """
    if stop is not None:
        return await _serve(args, stop, freeze_startup)
    stop = asyncio.Event()
    # From the start: a Ctrl-C during startup stops the server once it is up, cleanly.
    with stop_on_signals(stop):
        return await _serve(args, stop, freeze_startup)


async def _serve(args: argparse.Namespace, stop: asyncio.Event, freeze_startup: bool) -> int:
    try:
        server, demo = await start_server(args)
    except (ConfigError, OSError) as exc:
        print(f"iotmp server: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ListenError) else 2
    if demo is not None:
        print(f"demo settings written to {demo['path']}", flush=True)
        token = short_token(demo["token"])
        print(f"  http_url {server.http_url}  user {DEMO_USER}  token {token}", flush=True)
        if server.https_url:
            print(f"  https_url {server.https_url} (self-signed certificate)", flush=True)

    receiver = None
    if demo is not None:
        try:
            receiver = await start_demo_resources(server, lambda line: print(line, flush=True))
        except Exception as exc:  # a broken demo database: say so, do not trace
            await server.stop()
            print(f"iotmp server: cannot prepare the demo's resources: {exc}", file=sys.stderr)
            return 1
    if freeze_startup:
        gc.collect()
        gc.freeze()
        young, middle, _old = gc.get_threshold()
        gc.set_threshold(young, middle, SERVER_GC_THRESHOLD2)
    try:
        await stop.wait()
    finally:
        _LOGGER.info("shutting down")
        if receiver is not None:
            await receiver.close()
        await server.stop()
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run ``iotmp server`` with parsed arguments; returns the exit code."""
    setup_logging(args.log_level, log_format=getattr(args, "log_format", "text"))
    try:
        loop = choose_loop(getattr(args, "loop", "auto"))
    except EventLoopError as exc:
        print(f"iotmp server: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        return run_on(loop, run(args, freeze_startup=True))
    except KeyboardInterrupt:
        return 130
