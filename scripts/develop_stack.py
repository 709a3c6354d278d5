"""Development stack behind ``scripts/develop``.

Starts the local IOTMP server in demo mode, the demo devices, and a Home Assistant
of the *latest* test leg (the HA that ``requirements_test.txt`` pins) with a
throw-away configuration directory that loads ``custom_components/iotmp`` from this
checkout. Then it onboards Home Assistant and adds the integration through Home
Assistant's own HTTP API, exactly as a browser would, prints where to log in, and
runs until Ctrl-C (SIGINT), SIGTERM or SIGHUP, when it stops everything it started.

Run it through ``scripts/develop`` (which picks the interpreters and, on machines
without Python 3.14, the Debian forky root filesystem that ``scripts/setup``
built). Only the standard library and aiohttp are needed here; aiohttp is imported
lazily so that the ``missing-requirements`` helper runs in any venv with HA.

Layout of an instance (``--instance NAME``, default ``default``)::

    INSTANCE/config/             Home Assistant configuration directory
    INSTANCE/config/custom_components/iotmp -> CHECKOUT/custom_components/iotmp
    INSTANCE/demo.json           demo file of the local server (user, token, devices)
    INSTANCE/state.json          Home Assistant demo user and its password
    INSTANCE/server.log, devices.log, hass.log

INSTANCE is ``$IOTMP_CACHE/develop/NAME`` when the latest leg runs on the host, and
``/opt/iotmp/develop/NAME`` inside the forky root filesystem otherwise (on the host
``$IOTMP_CACHE/forky/opt/iotmp/develop/NAME``), because Home Assistant runs in there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVELOP_VENV_NAME = "venv-develop"
# Inside the forky root filesystem (paths as seen from inside).
FORKY_OPT = "/opt/iotmp"

HA_USER_NAME = "Demo"
HA_USERNAME = "demo"
LANGUAGE = "en"
ONBOARDING_STEPS = ("user", "core_config", "analytics", "integration")
DEMO_DEVICES_EXPECTED = 7
START_TIMEOUT = 240.0  # Home Assistant's HTTP server up
READY_TIMEOUT = 120.0  # integration loaded, devices and entities in the registries
STOP_TIMEOUT = 45.0  # per process group, then SIGKILL
# Set up by onboarding's core_config step; they need the internet.
ONLINE_ONBOARDING_DOMAINS = frozenset({"google_translate", "met", "radio_browser"})


class StackError(Exception):
    """A step failed; the message says what to do."""


def log(message: str) -> None:
    """One progress line on stderr."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[develop {stamp}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- layout


@dataclass
class Layout:
    """Paths of one instance, as this process sees them and as Home Assistant does."""

    mode: str  # "host", "chroot" (HA in the rootfs, we on the host) or "inside" (we are in it)
    cache: Path
    instance: str
    forky: Path | None  # host path of the rootfs (mode "chroot")
    latest_venv: str  # path as the latest-leg side sees it
    base_python: str  # interpreter that creates the develop venv (latest side)
    toolchain: Path = ROOT / "scripts" / "_toolchain.sh"
    runner: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode == "chroot":
            # forky_run (scripts/_toolchain.sh) enters the rootfs with /proc, /dev and
            # the checkout bind-mounted in a private mount namespace.
            self.runner = ["bash", "-c", 'source "$0" && forky_run "$@"', str(self.toolchain)]

    def host(self, latest_path: str) -> Path:
        """Host path of a path on the latest side."""
        if self.mode == "chroot":
            assert self.forky is not None
            return self.forky / latest_path.lstrip("/")
        return Path(latest_path)

    @property
    def instance_latest(self) -> str:
        """Instance directory as Home Assistant sees it."""
        if self.mode in ("chroot", "inside"):
            return f"{FORKY_OPT}/develop/{self.instance}"
        return str(self.cache / "develop" / self.instance)

    @property
    def instance_dir(self) -> Path:
        """Instance directory as we see it."""
        return self.host(self.instance_latest)

    @property
    def config_latest(self) -> str:
        """Home Assistant configuration directory as Home Assistant sees it."""
        return f"{self.instance_latest}/config"

    @property
    def config_dir(self) -> Path:
        """Home Assistant configuration directory as we see it."""
        return self.instance_dir / "config"

    @property
    def develop_venv(self) -> str:
        """Develop venv (latest side): the latest venv plus Home Assistant's UI packages."""
        if self.mode in ("chroot", "inside"):
            return f"{FORKY_OPT}/{DEVELOP_VENV_NAME}"
        return str(self.cache / DEVELOP_VENV_NAME)

    def latest_cmd(self, *args: str) -> list[str]:
        """Return a command that runs ARGS on the latest side."""
        return [*self.runner, *args]


# ------------------------------------------------------------ develop venv


def _run_latest(layout: Layout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        layout.latest_cmd(*args), check=check, capture_output=True, text=True, cwd=ROOT
    )


def ensure_develop_venv(layout: Layout) -> None:
    """Make the develop venv: the latest venv's packages plus HA's UI packages.

    A venv whose .pth adds the latest venv's site-packages, plus the requirements of
    the integrations Home Assistant always loads (frontend etc.).

    The test venv itself is never modified. Home Assistant runs with ``--skip-pip``, so it
    never installs anything at run time. Every package must install (without pymicro-vad,
    for one, the frontend cannot list services), so a failure stops here with the log.
    """
    venv = layout.develop_venv
    venv_host = layout.host(venv)
    latest_python_host = layout.host(f"{layout.latest_venv}/bin/python")
    if not latest_python_host.exists():
        raise StackError(f"no latest-leg venv at {latest_python_host}: run scripts/setup first")
    latest_stamp_file = layout.host(f"{layout.latest_venv}/.iotmp-stamp")
    latest_stamp = latest_stamp_file.read_text().strip() if latest_stamp_file.exists() else "?"
    stamp_file = venv_host / ".iotmp-develop-stamp"
    want_stamp = f"latest {latest_stamp}; packages v2"
    if (
        stamp_file.exists()
        and stamp_file.read_text().splitlines()[:1] == [want_stamp]
        and (venv_host / "bin" / "python").exists()
    ):
        return

    t0 = time.monotonic()
    log(f"preparing the develop venv {venv} (once per latest-venv change; a few minutes)")
    purelib = _run_latest(
        layout,
        f"{layout.latest_venv}/bin/python",
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    ).stdout.strip()
    if not (venv_host / "bin" / "python").exists():
        _run_latest(layout, "rm", "-rf", venv)
        _run_latest(layout, layout.base_python, "-m", "venv", venv)
    site = _run_latest(
        layout,
        f"{venv}/bin/python",
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    ).stdout.strip()
    layout.host(f"{site}/iotmp-latest-venv.pth").write_text(purelib + "\n")

    missing = json.loads(
        _run_latest(
            layout,
            f"{venv}/bin/python",
            str(Path(__file__).resolve()),
            "missing-requirements",
        ).stdout
    )
    failed: list[str] = []
    if missing and layout.mode in ("chroot", "inside"):
        ensure_rootfs_compiler(layout)
    if missing:
        log(f"installing {len(missing)} Home Assistant UI/default packages: {' '.join(missing)}")
        pip = [f"{venv}/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        logfile = layout.instance_dir.parent / "pip-develop.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        result = _run_latest(layout, *pip, *missing, check=False)
        logfile.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            # One by one, to name the culprits.
            for requirement in missing:
                single = _run_latest(layout, *pip, requirement, check=False)
                with logfile.open("a") as fh:
                    fh.write(single.stdout + single.stderr)
                if single.returncode != 0:
                    failed.append(requirement)
        if failed:
            # Every one matters: e.g. without pymicro-vad the frontend's service list
            # fails (HA imports every base platform to validate services.yaml files).
            raise StackError(f"could not install {', '.join(failed)}; see {logfile}")
    stamp_file.write_text(want_stamp + "\n")
    log(f"develop venv ready in {time.monotonic() - t0:.0f} s")


def ensure_rootfs_compiler(layout: Layout) -> None:
    """g++ in the forky rootfs: two of HA's voice packages have no Python 3.14 wheel.

    scripts/setup installs only gcc there (enough for the tests); this adds g++ once.
    """
    if layout.host("/usr/bin/g++").exists():
        return
    log("installing g++ in the forky rootfs (needed to build pymicro-vad / pyspeex-noise)")
    apt = "apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 g++"
    result = _run_latest(
        layout,
        "sh",
        "-c",
        f"{apt} || (apt-get -o Acquire::Check-Valid-Until=false update && {apt})",
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"apt-get install g++ in the rootfs failed:\n{result.stdout[-1500:]}"
            f"{result.stderr[-1500:]}"
        )


def missing_requirements() -> list[str]:
    """List requirements of the integrations HA always sets up that are not installed.

    Runs inside the develop venv (needs Home Assistant importable).
    """
    from homeassistant import bootstrap, components  # noqa: PLC0415
    from homeassistant.util import package  # noqa: PLC0415

    comp_dir = Path(components.__path__[0])
    wanted = set(bootstrap.DEFAULT_INTEGRATIONS) | set(bootstrap.CORE_INTEGRATIONS)
    wanted |= {"frontend", "config", "logger", "http", "onboarding"}
    wanted |= {"recorder", "history", "logbook", "energy"}  # CONFIGURATION_YAML
    manifests: dict[str, dict[str, Any]] = {}

    def visit(domain: str) -> None:
        if domain in manifests:
            return
        path = comp_dir / domain / "manifest.json"
        if not path.exists():
            return
        manifests[domain] = json.loads(path.read_text())
        for dep in manifests[domain].get("dependencies", []):
            visit(dep)

    for domain in sorted(wanted):
        visit(domain)
    requirements = sorted(
        {req for manifest in manifests.values() for req in manifest.get("requirements", [])}
    )
    return [req for req in requirements if not package.is_installed(req)]


# -------------------------------------------------------------- config dir

CONFIGURATION_YAML = """\
# Written by scripts/develop on every start; edit scripts/develop_stack.py instead.
homeassistant:
  name: IOTMP develop
  latitude: 40.4168
  longitude: -3.7038
  elevation: 650
  unit_system: metric
  currency: EUR
  country: ES
  time_zone: Europe/Madrid
  language: en
  internal_url: "{url}"

{http}
frontend:
config:
# What a user judges first: graphs, long-term statistics, the logbook and (the smart
# plug has an energy meter) the energy dashboard. Nothing else beyond what HA always
# loads, so no unrelated repairs or tracebacks.
recorder:
  commit_interval: 5
  purge_keep_days: 7
history:
logbook:
energy:

logger:
  default: warning
  logs:
    custom_components.iotmp: debug
    homeassistant.components.onboarding: info
    # No ffmpeg / libturbojpeg binaries in the throw-away setup; nothing here uses them.
    haffmpeg: critical
    homeassistant.components.camera.img_util: critical
"""


def read_json(path: Path) -> dict[str, Any] | None:
    """Return the JSON object in a file, or None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wipe_instance(layout: Layout) -> None:
    """Delete the instance directory (refuses paths outside the develop folder)."""
    target = layout.instance_dir
    parent = layout.host(layout.instance_latest).parent
    if target.parent != parent or parent.name != "develop" or not target.exists():
        return
    with open("/proc/self/mounts") as fh:
        if any(line.split()[1].startswith(str(target)) for line in fh):
            raise StackError(f"something is mounted below {target}; not deleting it")
    shutil.rmtree(target)


def prepare_config(layout: Layout, port: int, *, http_store: bool) -> None:
    """Create the configuration directory (kept between runs unless --fresh)."""
    config = layout.config_dir
    (config / "custom_components").mkdir(parents=True, exist_ok=True)
    link = config / "custom_components" / "iotmp"
    target = ROOT / "custom_components" / "iotmp"  # same path inside the rootfs
    if link.is_symlink() and os.readlink(link) != str(target):
        link.unlink()
    elif link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    if not link.is_symlink():
        link.symlink_to(target)
    http_yaml = f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\n"
    if http_store:
        # HA 2026.10+ keeps the HTTP settings in .storage/http; YAML is migrated once,
        # as a "pending" config that reverts after five minutes unless confirmed in the
        # UI. Write the confirmed ("stable") settings directly instead.
        http_yaml = "# http: settings are in .storage/http (written by scripts/develop)\n"
        storage = config / ".storage"
        storage.mkdir(exist_ok=True)
        (storage / "http").write_text(json.dumps(http_storage(port), indent=2) + "\n")
    (config / "configuration.yaml").write_text(
        CONFIGURATION_YAML.format(url=f"http://127.0.0.1:{port}", http=http_yaml)
    )


def http_storage(port: int) -> dict[str, Any]:
    """``.storage/http`` of HA 2026.10+: a confirmed config on 127.0.0.1:port."""
    return {
        "version": 2,
        "minor_version": 2,
        "key": "http",
        "data": {
            "stable": {
                "server_host": ["127.0.0.1"],
                "server_port": port,
                "cors_allowed_origins": ["https://cast.home-assistant.io"],
                "login_attempts_threshold": -1,
                "ip_ban_enabled": True,
                "ssl_profile": "modern",
                "use_x_frame_options": True,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                "error": None,
                "error_message": None,
            },
            "pending": None,
            "yaml_migration_done": True,
        },
    }


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------- processes


class Proc:
    """A child in its own session (so Ctrl-C reaches only us), logging to a file."""

    def __init__(self, name: str, cmd: list[str], logfile: Path, env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.logfile = logfile
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it."""
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as out:
            out.write(f"\n==== {time.strftime('%F %T')} {' '.join(self.cmd)}\n".encode())
            out.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Whether the direct child still runs."""
        return self.proc is not None and self.proc.returncode is None

    def tail(self, lines: int = 25) -> str:
        """Last lines of its log."""
        try:
            text = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _group_alive(self) -> bool:
        """Whether any live (non-zombie) process is left in its process group."""
        assert self.proc is not None
        pgid = self.proc.pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
            fields = text[text.rindex(")") + 2 :].split()
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal its whole process group and wait until every member is gone."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 0.2)
            if self.proc.returncode is not None and not self._group_alive():
                return
            await asyncio.sleep(0.1)
        log(f"{self.name} did not stop within {STOP_TIMEOUT:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)


# --------------------------------------------------------------- HA client


class HaClient:
    """The few Home Assistant HTTP/WebSocket calls the stack needs."""

    def __init__(self, session: Any, url: str) -> None:
        self.session = session
        self.url = url
        self.client_id = f"{url}/"
        self.redirect_uri = f"{url}/?auth_callback=1"
        self.access_token: str | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    async def request(
        self, method: str, path: str, *, json_body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, Any]:
        """One request; returns (status, JSON body or text)."""
        async with self.session.request(
            method, self.url + path, json=json_body, headers=self._headers()
        ) as resp:
            text = await resp.text()
            try:
                body: Any = json.loads(text) if text else None
            except ValueError:
                body = text
            if resp.status not in ok:
                raise StackError(f"{method} {path}: HTTP {resp.status}: {text[:300]}")
            return resp.status, body

    async def token_from_code(self, code: str) -> None:
        """Exchange an authorization code at /auth/token."""
        async with self.session.post(
            self.url + "/auth/token",
            data={"grant_type": "authorization_code", "code": code, "client_id": self.client_id},
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise StackError(f"/auth/token: HTTP {resp.status}: {body}")
        self.access_token = body["access_token"]

    async def login(self, username: str, password: str) -> None:
        """Log in with the login flow, as the frontend does."""
        _, flow = await self.request(
            "POST",
            "/auth/login_flow",
            json_body={
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": self.redirect_uri,
            },
        )
        _, result = await self.request(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            json_body={"username": username, "password": password, "client_id": self.client_id},
        )
        if result.get("type") != "create_entry":
            raise StackError(f"login as {username} failed: {result.get('errors')}")
        await self.token_from_code(result["result"])

    async def ws_commands(self, *commands: dict[str, Any]) -> list[Any]:
        """Run WebSocket commands in one connection; return their results."""
        ws_url = self.url.replace("http", "ws", 1) + "/api/websocket"
        results: list[Any] = []
        async with self.session.ws_connect(ws_url) as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": self.access_token})
            msg = await ws.receive_json()
            if msg.get("type") != "auth_ok":
                raise StackError(f"WebSocket auth failed: {msg}")
            for number, command in enumerate(commands, start=1):
                await ws.send_json({"id": number, **command})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == number and msg.get("type") == "result":
                        break
                if not msg.get("success"):
                    raise StackError(f"WebSocket {command['type']}: {msg.get('error')}")
                results.append(msg["result"])
        return results


# ------------------------------------------------------------------- stack


class Stack:
    """Server + devices + Home Assistant, brought up in order and down in reverse."""

    def __init__(self, args: argparse.Namespace, layout: Layout) -> None:
        if args.port == 0:
            args.port = free_port()
        self.args = args
        self.layout = layout
        self.procs: list[Proc] = []
        self.stopping = asyncio.Event()
        self.ha_url = f"http://127.0.0.1:{args.port}"
        self.demo: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}

    # -- processes

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    async def _spawn(self, name: str, cmd: list[str]) -> Proc:
        proc = Proc(name, cmd, self.layout.instance_dir / f"{name}.log", self._env())
        await proc.start()
        self.procs.append(proc)
        return proc

    async def start_server(self) -> None:
        """``iotmp server --demo`` (from the wheel scripts/develop installed)."""
        demo_file = self.layout.instance_dir / "demo.json"
        http_port = self.args.server_port
        tcp_port = 0 if http_port == 0 else self.args.server_tcp_port
        for port in (http_port, tcp_port):
            if port and not port_free(port):
                raise StackError(
                    f"port {port} on 127.0.0.1 is in use (another iotmp server or "
                    "scripts/develop?); stop it or choose --server-port/--server-tcp-port"
                )
        started = time.time()
        proc = await self._spawn(
            "server",
            [
                sys.executable, "-m", "iotmp", "server", "--demo",
                "--demo-file", str(demo_file),
                "--host", "127.0.0.1",
                "--http-port", str(http_port),
                "--tcp-port", str(tcp_port),
                "--no-tls",
            ],
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not proc.running:
                raise StackError(f"the local server exited:\n{proc.tail()}")
            if demo_file.exists() and demo_file.stat().st_mtime >= started - 1:
                data = read_json(demo_file)
                if data and "written to" in proc.tail(200):
                    self.demo = data
                    log(f"local IOTMP server at {data['http_url']} (log: {proc.logfile})")
                    return
            await asyncio.sleep(0.1)
        raise StackError(f"the local server did not write {demo_file}:\n{proc.tail()}")

    async def start_devices(self, session: Any) -> None:
        """``iotmp sim --demo``: the seven demo devices."""
        demo_file = self.layout.instance_dir / "demo.json"
        proc = await self._spawn(
            "devices",
            [sys.executable, "-m", "iotmp", "sim", "--demo", "--demo-file", str(demo_file),
             "--demo-timeout", "0"],
        )  # fmt: skip
        url = f"{self.demo['http_url']}/v1/users/{self.demo['user']}/devices"
        headers = {"Authorization": f"Bearer {self.demo['token']}"}
        wanted = {device["id"] for device in self.demo.get("devices", [])}
        deadline = time.monotonic() + 30
        online: set[str] = set()
        while time.monotonic() < deadline:
            if not proc.running:
                raise StackError(f"the demo devices exited:\n{proc.tail()}")
            async with session.get(url, headers=headers) as resp:
                devices = await resp.json()
            online = {d["device"] for d in devices if d.get("connection", {}).get("active")}
            online |= {d["device"] for d in devices if d.get("connected") is True}
            if wanted <= online:
                log(f"{len(wanted)} demo devices online (log: {proc.logfile})")
                return
            await asyncio.sleep(0.2)
        raise StackError(
            f"demo devices not online after 30 s (missing {sorted(wanted - online)}):\n"
            f"{proc.tail()}"
        )

    async def start_hass(self, session: Any) -> HaClient:
        """Home Assistant (latest leg) on the throw-away configuration directory."""
        layout = self.layout
        if not port_free(self.args.port):
            raise StackError(
                f"port {self.args.port} on 127.0.0.1 is in use (another Home Assistant or "
                "scripts/develop?); choose another with --port"
            )
        ha_http = layout.host(layout.latest_venv).glob(
            "lib/python3*/site-packages/homeassistant/components/http/config.py"
        )
        prepare_config(layout, self.args.port, http_store=any(ha_http))
        proc = await self._spawn(
            "hass",
            layout.latest_cmd(
                f"{layout.develop_venv}/bin/python", "-m", "homeassistant",
                "--config", layout.config_latest, "--skip-pip",
            ),
        )  # fmt: skip
        log(f"starting Home Assistant (latest leg) on {self.ha_url} (log: {proc.logfile})")
        client = HaClient(session, self.ha_url)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not proc.running:
                raise StackError(f"Home Assistant exited:\n{proc.tail()}")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                # Until onboarding is done its views answer; afterwards HA does not
                # register them (404) and the login providers answer instead.
                probe = "/auth/providers" if self._onboarded_on_disk() else "/api/onboarding"
                async with session.get(self.ha_url + probe) as resp:
                    if resp.status == 200:
                        return client
            await asyncio.sleep(0.3)
        raise StackError(f"Home Assistant did not answer within {START_TIMEOUT:.0f} s")

    # -- onboarding and integration

    def _onboarded_on_disk(self) -> bool:
        data = read_json(self.layout.config_dir / ".storage" / "onboarding") or {}
        done = (data.get("data") or {}).get("done") or []
        return set(ONBOARDING_STEPS) <= set(done)

    async def onboard(self, client: HaClient) -> None:
        """Complete onboarding through the API, or log in when it is already done."""
        state_file = self.layout.instance_dir / "state.json"
        self.state = read_json(state_file) or {}
        done = await self._onboarding_done(client)
        if "user" in done:
            if not self.state.get("password"):
                raise StackError(
                    "Home Assistant is onboarded but the demo user's password is unknown: "
                    "run again with --fresh"
                )
            await client.login(self.state["username"], self.state["password"])
        else:
            self.state = {
                "name": HA_USER_NAME,
                "username": HA_USERNAME,
                "password": secrets.token_urlsafe(12),
            }
            _, body = await client.request(
                "POST",
                "/api/onboarding/users",
                json_body={
                    "client_id": client.client_id,
                    "name": self.state["name"],
                    "username": self.state["username"],
                    "password": self.state["password"],
                    "language": LANGUAGE,
                },
            )
            state_file.write_text(json.dumps(self.state, indent=2) + "\n")
            state_file.chmod(0o600)
            await client.token_from_code(body["auth_code"])
            log(f"onboarding: created the Home Assistant user {HA_USERNAME!r}")
        # The remaining steps, in the frontend's order; 403 = already done.
        for path, body in (
            ("/api/onboarding/core_config", {}),
            ("/api/onboarding/analytics", {}),
            (
                "/api/onboarding/integration",
                {"client_id": client.client_id, "redirect_uri": client.redirect_uri},
            ),
        ):
            step = path.rsplit("/", 1)[1]
            if step not in done:
                await client.request("POST", path, json_body=body, ok=(200, 403))
        if (done := await self._onboarding_done(client)) != set(ONBOARDING_STEPS):
            raise StackError(f"onboarding incomplete: only {sorted(done)} done")

    @staticmethod
    async def _onboarding_done(client: HaClient) -> set[str]:
        """Return the steps done (HA drops the onboarding views, 404, once all are)."""
        status, steps = await client.request("GET", "/api/onboarding", ok=(200, 404))
        if status == 404:
            return set(ONBOARDING_STEPS)
        return {step["step"] for step in steps if step["done"]}

    async def wait_running(self, client: HaClient) -> None:
        """Wait until Home Assistant reports RUNNING (every integration set up)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            _, config = await client.request("GET", "/api/config")
            if config.get("state") == "RUNNING":
                return
            await asyncio.sleep(0.3)
        raise StackError("Home Assistant did not reach RUNNING")

    async def ensure_entry(self, client: HaClient) -> str:
        """Add the iotmp config entry through the config flow (or keep the one we made)."""
        _, entries = await client.request("GET", "/api/config/config_entries/entry?domain=iotmp")
        server = {"url": self.demo["http_url"], "token": self.demo["token"]}
        for entry in entries:
            if (
                entry["entry_id"] == self.state.get("entry_id")
                and self.state.get("server") == server
            ):
                log(f"integration entry {entry['title']!r} kept from the last run")
                return str(entry["entry_id"])
        for entry in entries:
            log(f"removing the stale integration entry {entry['title']!r}")
            await client.request("DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}")

        _, result = await client.request(
            "POST",
            "/api/config/config_entries/flow",
            json_body={"handler": "iotmp", "show_advanced_options": False},
        )
        flow_id = result["flow_id"]
        path = f"/api/config/config_entries/flow/{flow_id}"
        if result["type"] == "menu":  # user step: token or password
            _, result = await client.request("POST", path, json_body={"next_step_id": "token"})
        if result.get("type") != "form" or result.get("step_id") != "token":
            raise StackError(f"unexpected config flow step: {result}")
        _, result = await client.request(
            "POST",
            path,
            json_body={
                "url": self.demo["http_url"],
                "token": self.demo["token"],
                # The local server speaks plain http; the switch matters only for https.
                "verify_ssl": not self.demo["http_url"].startswith("https"),
            },
        )
        if result.get("type") == "form" and result.get("step_id") == "devices":
            _, result = await client.request(
                "POST", path, json_body={"all_devices": True, "devices": []}
            )
        if result.get("type") != "create_entry":
            raise StackError(f"the config flow did not create an entry: {result}")
        entry_id = str(result["result"]["entry_id"])
        self.state.update(entry_id=entry_id, server=server)
        state_file = self.layout.instance_dir / "state.json"
        state_file.write_text(json.dumps(self.state, indent=2) + "\n")
        log(f"config flow: added {result['title']!r} (all devices)")
        return entry_id

    async def remove_onboarding_extras(self, client: HaClient) -> None:
        """Remove entries of onboarding's core_config step that need the internet.

        Weather, radio and Google TTS cannot work without the internet and would show as
        failed on the integrations page. Their flows fail anyway (no packages).
        """
        _, entries = await client.request("GET", "/api/config/config_entries/entry")
        for entry in entries:
            if entry["domain"] in ONLINE_ONBOARDING_DOMAINS:
                await client.request(
                    "DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}"
                )

    async def wait_ready(self, client: HaClient, entry_id: str) -> dict[str, Any]:
        """Wait for the entry, every demo device and its entities.

        With the devices running, also for the lamp's light to be available.
        """
        wanted = [device["id"] for device in self.demo.get("devices", [])]
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            _, entries = await client.request(
                "GET", "/api/config/config_entries/entry?domain=iotmp"
            )
            entry = next((e for e in entries if e["entry_id"] == entry_id), None)
            if entry is None:
                raise StackError("the iotmp entry disappeared")
            if entry["state"] in ("setup_error", "migration_error", "failed_unload"):
                raise StackError(
                    f"the iotmp entry failed to set up ({entry['state']}: "
                    f"{entry.get('reason')}); see {self.layout.instance_dir / 'hass.log'}"
                )
            if entry["state"] == "loaded":
                devices, entities, states = await client.ws_commands(
                    {"type": "config/device_registry/list"},
                    {"type": "config/entity_registry/list"},
                    {"type": "get_states"},
                )
                info = self._describe(entry_id, wanted, devices, entities, states)
                found = [d for d in wanted if info.get(d, {}).get("entities")]
                lamp_live = any(
                    e["state"] not in ("unavailable", "unknown")
                    for e in info.get("rgb-lamp", {}).get("entities", [])
                    if e["entity_id"].startswith("light.")
                )
                if len(found) == len(wanted) and (self.args.no_devices or lamp_live):
                    return info
                last = f"{len(found)}/{len(wanted)} devices with entities"
            else:
                last = f"entry state {entry['state']}"
            await asyncio.sleep(0.5)
        raise StackError(f"integration not ready after {READY_TIMEOUT:.0f} s ({last})")

    @staticmethod
    def _describe(
        entry_id: str,
        wanted: list[str],
        devices: list[dict[str, Any]],
        entities: list[dict[str, Any]],
        states: list[dict[str, Any]],
    ) -> dict[str, Any]:
        state_of = {s["entity_id"]: s for s in states}
        info: dict[str, Any] = {}
        for device in devices:
            if entry_id not in device.get("config_entries", []):
                continue
            idents = [ident for domain, ident in device.get("identifiers", []) if domain == "iotmp"]
            device_id = next(
                (w for w in wanted for ident in idents if ident.endswith(f":{w}")), None
            )
            if device_id is None:
                continue
            info[device_id] = {
                "ha_device_id": device["id"],
                "name": device.get("name_by_user") or device.get("name"),
                "entities": [
                    {
                        "entity_id": ent["entity_id"],
                        "state": state_of.get(ent["entity_id"], {}).get("state", "unknown"),
                        "name": state_of.get(ent["entity_id"], {})
                        .get("attributes", {})
                        .get("friendly_name"),
                    }
                    for ent in entities
                    if ent.get("device_id") == device["id"] and not ent.get("disabled_by")
                ],
            }
        return info

    # -- main

    async def run(self) -> int:
        """Bring everything up, report, wait for a stop signal, bring it down."""
        import aiohttp  # noqa: PLC0415

        t0 = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                await self.start_server()
                if not self.args.no_devices:
                    await self.start_devices(session)
                client = await self.start_hass(session)
                await self.onboard(client)
                await self.wait_running(client)
                entry_id = await self.ensure_entry(client)
                devices = await self.wait_ready(client, entry_id)
                await self.remove_onboarding_extras(client)
            except StackError as err:
                log(f"ERROR: {err}")
                await self.stop_all()
                return 1
            elapsed = time.monotonic() - t0
            self.summary = {
                "ha_url": self.ha_url,
                "ha_name": self.state["name"],
                "ha_username": self.state["username"],
                "ha_password": self.state["password"],
                "ha_config_dir": str(self.layout.config_dir),
                "ha_log": str(self.layout.instance_dir / "hass.log"),
                "integration_url": f"{self.ha_url}/config/integrations/integration/iotmp",
                "entry_id": entry_id,
                "server_url": self.demo["http_url"],
                "server_user": self.demo["user"],
                "server_token": self.demo["token"],
                "demo_file": str(self.layout.instance_dir / "demo.json"),
                "devices_running": not self.args.no_devices,
                "devices": devices,
                "startup_seconds": round(elapsed, 1),
                "pid": os.getpid(),
            }
            self._print_summary(elapsed)
            if self.args.ready_file:
                path = Path(self.args.ready_file)
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text(json.dumps(self.summary, indent=2) + "\n")
                tmp.chmod(0o600)
                tmp.replace(path)
            rc = await self.supervise()
        await self.stop_all()
        if self.args.ready_file:
            with contextlib.suppress(OSError):
                os.unlink(self.args.ready_file)
        return rc

    def _print_summary(self, elapsed: float) -> None:
        lamp = self.summary["devices"].get("rgb-lamp")
        lines = [
            "",
            f"Home Assistant is ready ({elapsed:.0f} s): open {self.ha_url}",
            f"  log in as   {self.state['username']}  /  password {self.state['password']}",
            f"  integration {self.summary['integration_url']}",
        ]
        if lamp:
            lines.append(
                f"  RGB lamp    {self.ha_url}/config/devices/device/{lamp['ha_device_id']}"
            )
        lines += [
            f"  IOTMP server {self.demo['http_url']}  (user {self.demo['user']}, "
            f"token in {self.summary['demo_file']})",
            f"  logs        {self.layout.instance_dir}/{{hass,server,devices}}.log",
            "Ctrl-C stops Home Assistant, the devices and the server.",
            "",
        ]
        print("\n".join(lines), flush=True)

    async def supervise(self) -> int:
        """Run until a stop signal (0) or until a child dies (1)."""
        while not self.stopping.is_set():
            for proc in self.procs:
                if not proc.running:
                    log(f"{proc.name} exited unexpectedly:\n{proc.tail()}")
                    return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)
        return 0

    async def stop_all(self) -> None:
        """Stop Home Assistant, then the devices, then the server."""
        for proc in reversed(self.procs):
            if proc.proc is None:
                continue
            log(f"stopping {proc.name}")
            await proc.stop(signal.SIGTERM if proc.name == "hass" else signal.SIGINT)
        self.procs.clear()


async def amain(args: argparse.Namespace, layout: Layout) -> int:
    """Run the stack; SIGINT/SIGTERM/SIGHUP stop it (also while it is still starting)."""
    stack = Stack(args, layout)
    loop = asyncio.get_running_loop()
    runner = asyncio.ensure_future(stack.run())

    def on_signal() -> None:
        stack.stopping.set()
        if not stack.summary and not runner.done():
            runner.cancel()  # still starting: abandon the startup

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await runner
    except asyncio.CancelledError:
        log("interrupted while starting; stopping what was started")
        await stack.stop_all()
        return 130


# -------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Command line of scripts/develop."""
    parser = argparse.ArgumentParser(
        prog="scripts/develop",
        description=(
            "Start the local IOTMP server with the demo devices and a Home Assistant "
            "(latest test leg) that has the iotmp integration set up; Ctrl-C stops all."
        ),
    )
    parser.add_argument(
        "--port", type=int, default=8123, help="Home Assistant port (8123; 0 = any free port)"
    )
    parser.add_argument(
        "--server-port",
        type=int,
        default=25280,
        help="HTTP port of the local IOTMP server (25280; 0 = any free port, for the server's "
        "device port too)",
    )
    parser.add_argument(
        "--server-tcp-port", type=int, default=25204, help="IOTMP TCP port for devices (25204)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="wipe the instance (HA config, demo user, server secrets) and start over",
    )
    parser.add_argument(
        "--no-devices", action="store_true", help="do not run the demo devices (all offline)"
    )
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        help="when ready, write URLs and credentials there as JSON (removed on exit)",
    )
    parser.add_argument(
        "--instance",
        default="default",
        help="name of the throw-away instance (separate config, state and logs)",
    )
    # Set by scripts/develop:
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only build the Home Assistant venv this command needs, then exit (scripts/setup)",
    )
    parser.add_argument("--mode", choices=["host", "chroot", "inside"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--forky", help=argparse.SUPPRESS)
    parser.add_argument("--latest-venv", help=argparse.SUPPRESS)
    parser.add_argument("--base-python", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["missing-requirements"]:
        print(json.dumps(missing_requirements()))
        return 0
    args = build_parser().parse_args(argv)
    if not args.mode or not args.cache or not args.latest_venv or not args.base_python:
        print("run this through scripts/develop", file=sys.stderr)
        return 2
    if not all(part.isalnum() or part in "-_" for part in args.instance) or not args.instance:
        print("--instance: letters, digits, - and _ only", file=sys.stderr)
        return 2
    layout = Layout(
        mode=args.mode,
        cache=Path(args.cache),
        instance=args.instance,
        forky=Path(args.forky) if args.forky else None,
        latest_venv=args.latest_venv,
        base_python=args.base_python,
    )
    try:
        lock_path = layout.host(f"{layout.develop_venv}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one develop venv build at a time
            ensure_develop_venv(layout)
        if args.prepare_only:
            return 0
        if args.fresh:
            log(f"--fresh: wiping {layout.instance_dir}")
            wipe_instance(layout)
        elif (layout.config_dir / ".storage" / "onboarding").exists() and not read_json(
            layout.instance_dir / "state.json"
        ):
            log("the instance has no saved demo user; recreating it")
            wipe_instance(layout)
        layout.instance_dir.mkdir(parents=True, exist_ok=True)
    except (StackError, subprocess.CalledProcessError, OSError) as err:
        detail = getattr(err, "stderr", "") or ""
        log(f"ERROR: {err}\n{detail[-2000:]}")
        return 1
    return asyncio.run(amain(args, layout))


if __name__ == "__main__":
    sys.exit(main())
