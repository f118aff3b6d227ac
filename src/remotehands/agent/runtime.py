"""Running an agent: one or many devices, each with its driver, faces and link to the server.

A device is planned before anything starts (:func:`plan_device`): its driver built from its
name and settings, its dispatcher, its faces and their password; every problem found there is a
:class:`ConfigError`, so a typo in the config stops the agent before it touches a device. Then
:class:`Agent` runs every device in one TaskGroup: the driver starts, the listener serves the
device's faces, the device enrolls (once; its credential is kept in the state directory) and its
link to the server stays up. A device that fails (its enrollment is refused, its link dies) is
logged and stops alone; the others run on.

In a gateway (a config file of several KVMs) a device whose driver does not start (the KVM is
unreachable, refuses the password) does not stop: it enrolls and links anyway, so that the
operator sees it in the fleet, its health (``health.device``, apart from the link's own
health) saying why, while the agent retries the driver with capped, jittered backoff; once the
driver starts, the link says hello again with what the device can do. A running driver is
checked now and then (:meth:`Driver.check`: a KVM that lost its video signal or went away), and
its health says so until it serves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from remotehands.agent.auth import TokenStore, password_check
from remotehands.agent.config import AgentConfig, DeviceConfig, default_state_dir
from remotehands.agent.dispatch import Dispatcher
from remotehands.agent.faces.base import Face, FaceContext, make_face
from remotehands.agent.faces.listener import create_listener_app
from remotehands.agent.framesource import FrameSources
from remotehands.agent.link import AgentLink, load_or_enroll
from remotehands.agent.plugins import load_object
from remotehands.drivers.base import Driver, missing_methods
from remotehands.errors import ConfigError, DeviceTimeoutError, RemoteHandsError
from remotehands.protocol.models import DeviceCondition
from remotehands.serving import bound_address, check_trusted_proxies, parse_listen, serve_http
from remotehands.tls import TlsFiles, load, normalise_fingerprint, self_signed

__all__ = [
    "DEFAULT_LISTEN",
    "DRIVERS",
    "START_TIMEOUT_S",
    "Agent",
    "AgentOptions",
    "DevicePlan",
    "DeviceRun",
    "agent_tls",
    "bound_address",
    "make_driver",
    "parse_listen",
    "plan_device",
    "run_agent",
    "serve_http",
]

log = logging.getLogger(__name__)

# driver name -> import string; imported only when chosen, so a role pulls only its extras.
DRIVERS: dict[str, str] = {
    "x11": "remotehands.drivers.x11.driver:X11Driver",
    "fake": "remotehands.drivers.fake:FakeDriver",
    "tinypilot": "remotehands.drivers.tinypilot.driver:TinyPilotDriver",
    "pikvm": "remotehands.drivers.pikvm.driver:PikvmDriver",
    "openctrol": "remotehands.drivers.openctrol.driver:OpenctrolDriver",
}

DEFAULT_LISTEN = "127.0.0.1:8082"
START_TIMEOUT_S = 60.0
"""How long a device's driver may take to start and name its device."""


@dataclass
class AgentOptions:
    """Everything ``remotehands agent`` can be told for one device on the command line."""

    driver: str = "x11"
    display: str | None = None
    """The ``display`` setting (of the x11 driver), as ``--display`` gives it."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The driver's settings (``--setting KEY=VALUE``)."""
    listen: str | None = None
    password: str | None = None
    password_file: Path | None = None
    pam: bool = False
    server: str | None = None
    token: str | None = None
    name: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    token_ttl_s: int = 28_800
    hardware_id: str | None = None
    """Stable id of the device; by default the driver's (:meth:`Driver.hardware_id`)."""
    faces: list[str] = field(default_factory=lambda: ["native"])
    """The faces served on the listener (``--face``), the native one first."""
    face_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each face's own settings, by face name (from the face's command-line options)."""
    trusted_proxies: list[str] = field(default_factory=list)
    """Reverse proxies whose ``X-Forwarded-For`` the faces believe (``--trusted-proxy``)."""
    server_fingerprint: str | None = None
    """The server's certificate fingerprint (``sha256:HEX``) to pin (``--server-fingerprint``)."""
    tls: bool = False
    """Serve the faces over HTTPS with a self-signed certificate kept in ``state_dir``."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """The operator's certificate and key for the faces' HTTPS."""


def make_driver(name: str, settings: Mapping[str, Any] | None = None) -> Driver:
    """Build a driver from its name (a name of :data:`DRIVERS`, or ``package.module:Class``)
    and its settings; an unknown name, a missing extra or a bad setting is a
    :class:`ConfigError` that says what to do."""
    target = DRIVERS.get(name, name if ":" in name else None)
    if target is None:
        raise ConfigError(f"unknown driver {name!r}: choose one of {', '.join(sorted(DRIVERS))}")
    cls = load_object(target, f"the {name} driver")
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"{target} is not a driver class (a subclass of Driver)")
    driver = cls.from_settings(settings or {})
    # a driver may narrow its capabilities per device: it still has to implement them all
    missing = missing_methods(cls, frozenset(driver.capabilities))
    if missing:
        raise ConfigError(f"the {name} driver declares capabilities it lacks: {sorted(missing)}")
    return driver


@dataclass
class DevicePlan:
    """One device, ready to start: everything checked that can be checked without it."""

    name: str
    driver: Driver
    dispatcher: Dispatcher
    server: str | None = None
    enrollment_token: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    listen: str | None = None
    faces: Sequence[Face] = ()
    app: Any = None
    """The listener's ASGI app, when the device serves faces."""
    hardware_id: str | None = None
    tags: Sequence[str] = ()
    frames: FrameSources | None = None
    """The device's frame sources (one per screen), shared by its link and its faces."""
    trusted_proxies: Sequence[str] = ()
    """Reverse proxies whose forwarding headers the listener believes; none: ignored."""
    server_fingerprint: str | None = None
    """The pinned certificate of the server (``sha256:HEX``)."""
    tls: TlsFiles | None = None
    """The certificate the listener serves HTTPS with; None: plain HTTP."""


def plan_device(
    name: str,
    driver: Driver,
    *,
    listen: str | None,
    faces: Sequence[str],
    password: str | None,
    password_file: Path | None,
    pam: bool,
    token_ttl_s: int = 28_800,
    server: str | None = None,
    enrollment_token: str | None = None,
    state_dir: Path | None = None,
    hardware_id: str | None = None,
    tags: Sequence[str] = (),
    face_settings: Mapping[str, Mapping[str, Any]] | None = None,
    trusted_proxies: Sequence[str] = (),
    server_fingerprint: str | None = None,
    tls: TlsFiles | None = None,
) -> DevicePlan:
    """Plan a device: its dispatcher, and on ``listen`` its faces behind one password (the
    listener's routes checked for collisions). Nothing is opened until :class:`Agent` runs
    the plan."""
    dispatcher = Dispatcher(driver)
    frames = dispatcher.frame_sources
    plan = DevicePlan(name=name, driver=driver, dispatcher=dispatcher, server=server,
                      enrollment_token=enrollment_token,
                      state_dir=state_dir or default_state_dir(), listen=listen,
                      hardware_id=hardware_id, tags=tags, frames=frames,
                      trusted_proxies=check_trusted_proxies(trusted_proxies),
                      server_fingerprint=normalise_fingerprint(server_fingerprint)
                      if server_fingerprint else None, tls=tls)  # fmt: skip
    if listen is None:
        return plan
    parse_listen(listen)
    check = password_check(password=password, password_file=password_file, pam=pam)
    context = FaceContext(device=name, dispatcher=dispatcher,
                          tokens=TokenStore(check, ttl_s=token_ttl_s), frames=frames)  # fmt: skip
    own = face_settings or {}
    plan.faces = [make_face(face, replace(context, settings=own.get(face, {}))) for face in faces]
    plan.app = create_listener_app(plan.faces, device=f"device {name!r}")
    return plan


State = Literal["planned", "starting", "running", "retrying", "failed", "stopped"]
"""``retrying``: the device's driver did not start (a KVM unreachable, refusing the agent's
password); the agent retries it with backoff, and its link (when it has one) is up meanwhile,
saying why in the device's health."""

RETRY_BASE_S = 1.0
RETRY_CAP_S = 60.0
CHECK_INTERVAL_S = 30.0
"""How often a running device's driver is checked (:meth:`Driver.check`) for its health."""


@dataclass
class DeviceRun:
    """A device as the agent runs it, observable while it runs."""

    plan: DevicePlan
    state: State = "planned"
    error: BaseException | None = None
    """Why the device stopped (``failed``) or why its driver does not start (``retrying``)."""
    address: str | None = None
    """``host:port`` its listener really serves on."""
    link: AgentLink | None = None
    hardware_id: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the device runs, retries its driver or has failed."""
    driver_up: bool = False
    """Whether the driver started (and was not closed since)."""
    problem: str | None = None
    """Why the device cannot serve right now, in its driver's words: its driver does not
    start, or its last check failed (no video signal); None when it can."""
    driver_starts: int = 0
    """How many times the driver was started (1 unless it came up after retries)."""
    start_attempts: int = 0
    """How many times starting the driver was tried."""

    @property
    def name(self) -> str:
        """The device's name."""
        return self.plan.name

    def condition(self) -> DeviceCondition | None:
        """The device's side of its health, as heartbeats report it (None before the first
        start was tried)."""
        if not self.driver_up:
            if self.problem is None:
                return None
            return DeviceCondition(state="down", reason=self.problem)
        if self.problem is not None:
            return DeviceCondition(state="failing", reason=self.problem)
        return DeviceCondition(state="ok")


class Agent:
    """Runs devices side by side until cancelled; a failing device stops alone.

    ``isolate=False`` (one device from the command line) lets a device's failure end
    :meth:`run` with its error, as a single-device agent should. With ``isolate`` (a config
    file, a gateway in a rack), a driver that does not start is retried with capped
    exponential backoff (``retry_base_s`` .. ``retry_cap_s``, jittered) while the device
    enrolls and links anyway, its health saying why; a running driver is checked every
    ``check_interval_s``.
    """

    def __init__(
        self,
        plans: Sequence[DevicePlan],
        *,
        isolate: bool = True,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.devices: dict[str, DeviceRun] = {plan.name: DeviceRun(plan) for plan in plans}
        self.isolate = isolate
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.check_interval_s = check_interval_s

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        *,
        token_ttl_s: int = 28_800,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> Agent:
        """Plan every device of ``config``; a :class:`ConfigError` names the device."""
        env_password = os.environ.get("REMOTEHANDS_AGENT_PASSWORD") or None
        plans = [_plan_from_config(config, device, env_password, token_ttl_s)
                 for device in config.devices]  # fmt: skip
        return cls(plans, retry_base_s=retry_base_s, retry_cap_s=retry_cap_s,
                   check_interval_s=check_interval_s)  # fmt: skip

    async def run(self) -> None:
        """Run every device; returns (or raises) only when every device has stopped."""
        try:
            async with asyncio.TaskGroup() as group:
                for run in self.devices.values():
                    group.create_task(self._device(run), name=f"device {run.name}")
        except ExceptionGroup as group:
            # one device (isolate=False) failed: its error is the agent's, as it was
            first = group.exceptions[0]
            if len(group.exceptions) == 1 and isinstance(first, RemoteHandsError):
                raise first from None
            raise
        failed = [run for run in self.devices.values() if run.state == "failed"]
        if failed:
            raise ConfigError(
                f"no device is running: {'; '.join(f'{r.name}: {r.error}' for r in failed)}"
            )

    async def _device(self, run: DeviceRun) -> None:
        plan = run.plan
        run.state = "starting"
        try:
            await self._serve_device(run)
        except asyncio.CancelledError:
            run.state = "stopped"
            raise
        except Exception as err:
            run.state, run.error = "failed", err
            run.settled.set()
            detail = err.details if isinstance(err, RemoteHandsError) else repr(err)
            if not self.isolate:
                raise
            log.error("device %s (%s driver) failed and is stopped; the others run on: %s",
                      plan.name, plan.driver.kind, detail,
                      exc_info=not isinstance(err, RemoteHandsError))  # fmt: skip
        finally:
            run.driver_up = False
            if plan.frames is not None:
                await plan.frames.aclose()
            await plan.dispatcher.aclose()

    async def _start_driver(self, run: DeviceRun, stack: contextlib.AsyncExitStack) -> bool:
        """Start the driver (closed with ``stack``); False, with the reason in the run, when it
        does not start and the agent isolates its devices."""
        plan = run.plan
        run.start_attempts += 1
        try:
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await stack.enter_async_context(plan.driver)
                    run.driver_starts += 1
                    run.hardware_id = plan.hardware_id or await plan.driver.hardware_id()
                    # a killed agent (or anyone) may have left keys or buttons down on the
                    # display: the next typed text would come out shifted
                    stuck = await plan.dispatcher.release_input(everything=True)
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"the {plan.driver.kind} driver did not start within {START_TIMEOUT_S:g} s"
                ) from err
        except Exception as err:
            if not self.isolate:
                raise
            reason = err.details if isinstance(err, RemoteHandsError) else repr(err)
            if reason != run.problem:
                log.error("device %s (%s driver) does not start; retrying it, the others run "
                          "on: %s", plan.name, plan.driver.kind, reason,
                          exc_info=not isinstance(err, RemoteHandsError))  # fmt: skip
            run.problem, run.error = reason, err
            return False
        if stuck:
            log.warning("device %s: released input left down on it: %s", plan.name,
                        ", ".join(sorted(stuck.keys | stuck.buttons)))  # fmt: skip
        run.driver_up, run.problem, run.error = True, None, None
        return True

    async def _enrollment_id(self, run: DeviceRun) -> str:
        """The hardware id the device enrolls and keeps its credential under: pinned in the
        state directory once enrolled (so a KVM that was down at its first start stays the
        same device once up), else the device's own, else one from its settings."""
        plan = run.plan
        if plan.hardware_id:
            return plan.hardware_id
        pin = _pin_file(plan) if self.isolate else None
        if pin is not None:
            pinned = await asyncio.to_thread(_read_pin, pin)
            if pinned:
                return pinned
        if run.hardware_id is not None:
            return run.hardware_id
        try:
            async with asyncio.timeout(5):
                return await plan.driver.hardware_id()
        except (RemoteHandsError, TimeoutError):
            return await Driver.hardware_id(plan.driver)

    async def _serve_device(self, run: DeviceRun) -> None:
        plan = run.plan
        async with contextlib.AsyncExitStack() as stack:
            await self._start_driver(run, stack)
            if plan.app is not None and plan.listen is not None:
                server = await stack.enter_async_context(
                    serve_http(
                        plan.app,
                        plan.listen,
                        websockets=True,
                        trusted_proxies=plan.trusted_proxies,
                        ssl=plan.tls.uvicorn_options() if plan.tls else None,
                    )
                )
                run.address = bound_address(server)
                faces = ", ".join(face.name for face in plan.faces)
                scheme = "https" if plan.tls else "http"
                log.info("device %s: %s on %s://%s", plan.name, faces, scheme, run.address)
                if plan.tls is not None:
                    log.info("device %s: TLS certificate %s", plan.name, plan.tls.fingerprint)
            if plan.server:
                enrolled = await self._enrollment_id(run)
                credential = await load_or_enroll(
                    plan.server, plan.enrollment_token, state_dir=plan.state_dir,
                    hardware=enrolled, device_type=plan.driver.device_type,
                    name=plan.name, tags=plan.tags, pin=plan.server_fingerprint,
                )  # fmt: skip
                if self.isolate:
                    await asyncio.to_thread(_write_pin, _pin_file(plan), enrolled)
                if run.hardware_id is None:
                    run.hardware_id = enrolled  # until the device names itself
                log.info("device %s: enrolled as %s with %s", plan.name,
                            credential.device_id, plan.server)  # fmt: skip
                run.link = AgentLink(credential, plan.dispatcher, driver_name=plan.driver.kind,
                                     device_type=plan.driver.device_type,
                                     hardware=run.hardware_id, frames=plan.frames,
                                     condition=run.condition,
                                     pin=plan.server_fingerprint)  # fmt: skip
            run.state = "running" if run.driver_up else "retrying"
            run.settled.set()
            try:
                async with asyncio.TaskGroup() as tasks:
                    if run.link is not None:
                        tasks.create_task(run.link.run(), name=f"link {plan.name}")
                    tasks.create_task(self._keep_driver(run, stack), name=f"driver {plan.name}")
            except ExceptionGroup as group:
                # the link ended (its credential refused): that error is the device's
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise

    async def _keep_driver(self, run: DeviceRun, stack: contextlib.AsyncExitStack) -> None:
        """Start a driver that is down, with backoff; check one that runs, now and then."""
        attempt = 0
        while True:
            if not run.driver_up:
                ceiling = min(self.retry_cap_s, self.retry_base_s * 2**attempt)
                await asyncio.sleep(ceiling * random.uniform(0.5, 1.0))
                attempt = min(attempt + 1, 30)
                if await self._start_driver(run, stack):
                    attempt = 0
                    run.state = "running"
                    log.info("device %s: its %s driver started", run.name,
                                run.plan.driver.kind)  # fmt: skip
                    if run.link is not None:
                        # the hello lists what the driver has: say it again, now that it runs
                        run.link.hardware = run.hardware_id or run.link.hardware
                        await run.link.rehello()
                continue
            await self._check(run)  # right after a start too: a KVM may be up with no video
            await asyncio.sleep(self.check_interval_s)

    async def _check(self, run: DeviceRun) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await run.plan.driver.check()
        except TimeoutError:
            problem: str | None = f"the device did not answer within {START_TIMEOUT_S:g} s"
        except RemoteHandsError as err:
            problem = err.details
        except Exception as err:  # a driver bug must not end the device
            log.exception("device %s: its driver's check failed unexpectedly", run.name)
            problem = f"the driver's check failed: {err!r}"
        else:
            problem = None
        if problem != run.problem:
            if problem is None:
                log.info("device %s serves again", run.name)
            else:
                log.error("device %s cannot serve: %s", run.name, problem)
        run.problem = problem


def _pin_file(plan: DevicePlan) -> Path:
    key = hashlib.sha256(f"{(plan.server or '').rstrip('/')}|{plan.name}".encode())
    return plan.state_dir / f"device-{key.hexdigest()[:16]}.json"


def _read_pin(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"the device file {path} is damaged ({err}): remove it") from err
    value = data.get("hardware_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _write_pin(path: Path, hardware_id: str) -> None:
    if _read_pin(path) == hardware_id:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hardware_id": hardware_id}), encoding="utf-8")
    tmp.replace(path)


def _plan_from_config(
    config: AgentConfig, device: DeviceConfig, env_password: str | None, token_ttl_s: int
) -> DevicePlan:
    try:
        driver = make_driver(device.driver, device.settings)
        own = device.password_file is not None or device.pam
        return plan_device(
            device.name, driver, listen=device.listen, faces=device.faces,
            password=None if own or config.password_file or config.pam else env_password,
            password_file=device.password_file if own else config.password_file,
            pam=device.pam if own else config.pam, token_ttl_s=token_ttl_s,
            server=config.server, enrollment_token=device.enrollment_token,
            state_dir=config.state_dir, tags=device.tags,
            face_settings=device.face_settings,
            trusted_proxies=config.trusted_proxies, server_fingerprint=config.server_fingerprint,
            tls=agent_tls(config.state_dir, tls=config.tls, cert=config.tls_cert,
                          key=config.tls_key, listen=device.listen),
        )  # fmt: skip
    except ConfigError as err:
        raise ConfigError(f"device {device.name!r}: {err.details}") from err


def agent_tls(
    state_dir: Path, *, tls: bool, cert: Path | None, key: Path | None, listen: str | None
) -> TlsFiles | None:
    """The certificate a device's listener serves HTTPS with: the operator's (``cert`` and
    ``key``), or with ``tls`` a self-signed one kept in ``state_dir/tls`` (made once, reused
    after restarts); None for plain HTTP."""
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both, or neither")
    if cert is not None and key is not None:
        return load(cert, key)
    if not tls:
        return None
    host = parse_listen(listen)[0] if listen else "127.0.0.1"
    return self_signed(state_dir / "tls", [host])


async def run_agent(options: AgentOptions, started: asyncio.Event | None = None) -> None:
    """Run one device until cancelled: its native face (standalone, or with ``--listen``) and
    its link; its failure is this function's error."""
    listen = options.listen or (None if options.server else DEFAULT_LISTEN)
    settings = dict(options.settings)
    if options.display is not None:
        settings["display"] = options.display
    driver = make_driver(options.driver, settings)  # an unknown driver is said first
    plan = plan_device(
        options.name or options.driver, driver, listen=listen, faces=options.faces,
        password=options.password, password_file=options.password_file, pam=options.pam,
        token_ttl_s=options.token_ttl_s, server=options.server,
        enrollment_token=options.token, state_dir=options.state_dir,
        hardware_id=options.hardware_id, face_settings=options.face_settings,
        trusted_proxies=options.trusted_proxies,
        server_fingerprint=options.server_fingerprint,
        tls=agent_tls(options.state_dir, tls=options.tls, cert=options.tls_cert,
                      key=options.tls_key, listen=listen),
    )  # fmt: skip
    agent = Agent([plan], isolate=False)
    run = agent.devices[plan.name]
    if started is None:
        await agent.run()
        return
    task = asyncio.create_task(agent.run())
    try:
        settled = asyncio.create_task(run.settled.wait())
        await asyncio.wait({task, settled}, return_when=asyncio.FIRST_COMPLETED)
        settled.cancel()
        if run.state == "running":
            started.set()
        await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
