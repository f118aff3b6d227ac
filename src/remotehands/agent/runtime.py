"""Running an agent: one or many devices, each with its driver, faces and link to the server.

A device is planned before anything starts (:func:`plan_device`): its driver built from its
name and settings, its dispatcher, its faces and their password; every problem found there is a
:class:`ConfigError`, so a typo in the config stops the agent before it touches a device. Then
:class:`Agent` runs every device in one TaskGroup: the driver starts, the listener serves the
device's faces, the device enrolls (once; its credential is kept in the state directory) and its
link to the server stays up. A device that fails (its driver does not start, its enrollment is
refused, its link or driver dies) is logged and stops alone; the others run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from remotehands.drivers.base import Driver, Screen, missing_methods
from remotehands.errors import ConfigError, DeviceTimeoutError, RemoteHandsError
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
    trusted_proxies: Sequence[str] = (),
    server_fingerprint: str | None = None,
    tls: TlsFiles | None = None,
) -> DevicePlan:
    """Plan a device: its dispatcher, and on ``listen`` its faces behind one password (the
    listener's routes checked for collisions). Nothing is opened until :class:`Agent` runs
    the plan."""
    dispatcher = Dispatcher(driver)
    frames = FrameSources(driver) if isinstance(driver, Screen) and driver.has("screen") else None
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
    plan.faces = [make_face(face, context) for face in faces]
    plan.app = create_listener_app(plan.faces, device=f"device {name!r}")
    return plan


State = Literal["planned", "starting", "running", "failed", "stopped"]


@dataclass
class DeviceRun:
    """A device as the agent runs it, observable while it runs."""

    plan: DevicePlan
    state: State = "planned"
    error: BaseException | None = None
    """Why the device stopped, when it failed."""
    address: str | None = None
    """``host:port`` its listener really serves on."""
    link: AgentLink | None = None
    hardware_id: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the device runs or has failed."""

    @property
    def name(self) -> str:
        """The device's name."""
        return self.plan.name


class Agent:
    """Runs devices side by side until cancelled; a failing device stops alone.

    ``isolate=False`` (one device from the command line) lets a device's failure end
    :meth:`run` with its error, as a single-device agent should.
    """

    def __init__(self, plans: Sequence[DevicePlan], *, isolate: bool = True) -> None:
        self.devices: dict[str, DeviceRun] = {plan.name: DeviceRun(plan) for plan in plans}
        self.isolate = isolate

    @classmethod
    def from_config(cls, config: AgentConfig, *, token_ttl_s: int = 28_800) -> Agent:
        """Plan every device of ``config``; a :class:`ConfigError` names the device."""
        env_password = os.environ.get("REMOTEHANDS_AGENT_PASSWORD") or None
        return cls([_plan_from_config(config, device, env_password, token_ttl_s)
                    for device in config.devices])  # fmt: skip

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
            if plan.frames is not None:
                await plan.frames.aclose()
            await plan.dispatcher.aclose()

    async def _serve_device(self, run: DeviceRun) -> None:
        plan = run.plan
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await stack.enter_async_context(plan.driver)
                    run.hardware_id = plan.hardware_id or await plan.driver.hardware_id()
                    # a killed agent (or anyone) may have left keys or buttons down on the
                    # display: the next typed text would come out shifted
                    stuck = await plan.dispatcher.release_input(everything=True)
            except TimeoutError as err:
                raise DeviceTimeoutError(
                    f"the {plan.driver.kind} driver did not start within {START_TIMEOUT_S:g} s"
                ) from err
            if stuck:
                log.warning("device %s: released input left down on it: %s", plan.name,
                            ", ".join(sorted(stuck.keys | stuck.buttons)))  # fmt: skip
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
                log.warning("device %s: %s on %s://%s", plan.name, faces, scheme, run.address)
                if plan.tls is not None:
                    log.warning("device %s: TLS certificate %s", plan.name, plan.tls.fingerprint)
            link_task = None
            if plan.server:
                credential = await load_or_enroll(
                    plan.server, plan.enrollment_token, state_dir=plan.state_dir,
                    hardware=run.hardware_id, device_type=plan.driver.device_type,
                    name=plan.name, tags=plan.tags, pin=plan.server_fingerprint,
                )  # fmt: skip
                log.warning("device %s: enrolled as %s with %s", plan.name,
                            credential.device_id, plan.server)  # fmt: skip
                run.link = AgentLink(credential, plan.dispatcher, driver_name=plan.driver.kind,
                                     device_type=plan.driver.device_type,
                                     hardware=run.hardware_id, frames=plan.frames,
                                     pin=plan.server_fingerprint)  # fmt: skip
                link_task = asyncio.create_task(run.link.run(), name=f"link {plan.name}")
            run.state = "running"
            run.settled.set()
            if link_task is None:
                await asyncio.Event().wait()
            else:
                try:
                    await link_task
                finally:
                    link_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await link_task


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
        options.name or options.driver, driver, listen=listen, faces=["native"],
        password=options.password, password_file=options.password_file, pam=options.pam,
        token_ttl_s=options.token_ttl_s, server=options.server,
        enrollment_token=options.token, state_dir=options.state_dir,
        hardware_id=options.hardware_id, trusted_proxies=options.trusted_proxies,
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
