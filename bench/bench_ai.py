"""For AI agents: act vs the reference computer-use loop, OCR, and the MCP overhead, in one run.

    .venv/bin/python bench/bench_ai.py [--rounds 5] [--reference-rounds 1] [--ocr-rounds 5]
        [--cua /tmp/cua/bin/python]

Runs ``remotehands demo`` (the fleet server, a 1920x1080 Xvfb desktop and an enrolled x11
agent) and prints median / min / max in milliseconds for:

- **act**: three steps (click into the terminal, type a command, press Return) and the settled
  screenshot in hand, through the SDK and the server; beside the reference computer-use loop
  on the same desktop: one ``xdotool`` process per action, a fixed 2 s sleep after each, then
  ``scrot`` + resize to 1280 px + PNG;
- **OCR** by the agent (tesseract through tesserocr) on a 400x300 region and on the whole 1080p
  screen, with the words found against the words drawn; beside the ``tesseract`` command line
  and, when ``--rapidocr PYTHON`` names an interpreter with ``rapidocr_onnxruntime``, RapidOCR on
  the same images;
- **MCP**: the ``screenshot`` tool of ``remotehands mcp`` (stdio, the SDK's client) against the
  same screenshot (scaled to 1280 px) through the SDK;
- **input** (its own desktop and ``remotehands agent --listen``): move, click and typing 100
  characters through the SDK direct to the agent, over HTTP and over the persistent WebSocket,
  in turns; with ``--cua PYTHON`` (an interpreter with ``cua-computer-server``, kept out of the
  project's environment) cua's computer server on the same desktop over its WebSocket, in
  turns with ours with pyautogui's pause off, and as installed (a 0.1 s pause a call) after;
- **hop**: the same through the server, over HTTP and against the device's WebSocket, in turns.

Figures, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from common import free_port, is_up, measure, measure_together, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from PIL import Image  # noqa: E402

from remotehands.client import FleetClient  # noqa: E402

REMOTEHANDS = str(ROOT / ".venv/bin/remotehands")
VOCABULARY = [
    "account",
    "active",
    "address",
    "agent",
    "answer",
    "apply",
    "archive",
    "backup",
    "balance",
    "border",
    "branch",
    "browser",
    "button",
    "cancel",
    "change",
    "channel",
    "client",
    "close",
    "column",
    "command",
    "config",
    "connect",
    "content",
    "control",
    "create",
    "current",
    "cursor",
    "custom",
    "delete",
    "desktop",
    "device",
    "dialog",
    "display",
    "document",
    "domain",
    "download",
    "driver",
    "editor",
    "enable",
    "export",
    "family",
    "feature",
    "filter",
    "folder",
    "format",
    "gateway",
    "global",
    "header",
    "history",
    "import",
    "install",
    "journal",
    "kernel",
    "keyboard",
    "label",
    "layout",
    "library",
    "license",
    "machine",
    "manager",
    "market",
    "memory",
    "message",
    "mirror",
    "monitor",
    "network",
    "notice",
    "number",
    "option",
    "output",
    "package",
    "panel",
    "parent",
    "partner",
    "password",
    "pointer",
    "policy",
    "portal",
    "preview",
    "printer",
    "private",
    "profile",
    "program",
    "project",
    "public",
    "record",
    "remote",
    "report",
    "request",
    "resource",
    "review",
    "router",
    "sample",
    "screen",
    "search",
    "select",
    "server",
    "service",
    "session",
    "setting",
    "signal",
    "source",
    "status",
    "storage",
    "stream",
    "system",
    "table",
    "target",
    "template",
    "terminal",
    "ticket",
    "toolbar",
    "update",
    "upload",
    "vendor",
    "version",
    "window",
    "wizard",
    "worker",
]

TK_WORDS = r"""
import json, sys, tkinter as tk
x, y, w, h, size, lines = sys.argv[1:7]
text = json.loads(lines)
root = tk.Tk(); root.title("words"); root.geometry(f"{w}x{h}+{x}+{y}")
root.configure(bg="white")
label = tk.Label(root, text="\n".join(text), font=("DejaVu Sans", -int(size)), bg="white",
                 fg="black", justify="left", anchor="nw")
label.pack(fill="both", expand=True, padx=8, pady=8)
def ready():
    root.update_idletasks()
    print(json.dumps([label.winfo_rootx(), label.winfo_rooty(), label.winfo_width(),
                      label.winfo_height()]), flush=True)
root.wait_visibility(); root.after(300, ready); root.mainloop()
"""


def _words_window(
    env: dict[str, str], x: int, y: int, w: int, h: int, size: int, lines: list[str]
) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TK_WORDS, str(x), str(y), str(w), str(h), str(size),
         json.dumps(lines)],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    area = json.loads(proc.stdout.readline())
    return proc, area


def _lines(rng: random.Random, count: int, per_line: int) -> list[str]:
    return [" ".join(rng.choice(VOCABULARY) for _ in range(per_line)) for _ in range(count)]


def _found(drawn: list[str], read: str) -> int:
    """How many of the drawn words were read (as a multiset)."""
    seen = Counter(re.findall(r"[a-z]+", read.lower()))
    wanted = Counter(w for line in drawn for w in line.split())
    return sum(min(n, seen[w]) for w, n in wanted.items())


def _start_demo(data: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [REMOTEHANDS, "demo", "--json", "--listen", "127.0.0.1:0", "--data", str(data)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "67108864",
             "MALLOC_TRIM_THRESHOLD_": "268435456"},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("remotehands demo did not start")
    return proc, json.loads(line)


def _x_env(info: dict[str, Any]) -> dict[str, str]:
    """DISPLAY and XAUTHORITY of the demo's desktop: the cookie file that names its display."""
    env = {**os.environ, "DISPLAY": info["display"]}
    for cookie in sorted(Path(tempfile.gettempdir()).glob("remotehands-desktop-*/Xauthority"),
                         key=lambda p: p.stat().st_mtime, reverse=True):  # fmt: skip
        listed = subprocess.run(["xauth", "-f", str(cookie), "list"], capture_output=True,
                                text=True).stdout  # fmt: skip
        if re.search(rf"{re.escape(info['display'])}\s", listed):
            env["XAUTHORITY"] = str(cookie)
            break
    return env


def bench_act(device: Any, env: dict[str, str], rounds: int, reference_rounds: int) -> None:
    windows = device.windows()
    terminal = next(w for w in windows if "xterm" in (w.get("process_name") or "").lower()
                    or w.get("title") == "terminal")  # fmt: skip
    b = terminal["bounds"]
    cx, cy = b["x"] + b["width"] // 2, b["y"] + b["height"] // 2
    counter = iter(range(10**6))
    steps_done: list[dict[str, Any]] = []

    def ours() -> None:
        i = next(counter)
        result = device.act(
            [{"type": "click", "x": cx, "y": cy},
             {"type": "type", "text": f"echo remotehands {i}"},
             {"type": "key", "keys": "Return"}],
            scale=1280 / 1920,
        )  # fmt: skip
        assert isinstance(result["screenshot"]["image"], bytes)
        steps_done.append(result)

    def reference() -> None:
        i = next(counter)
        for args in (["mousemove", str(cx), str(cy), "click", "1"],
                     ["type", f"echo reference {i}"], ["key", "Return"]):  # fmt: skip
            subprocess.run(["xdotool", *args], env=env, check=True)
            time.sleep(2.0)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "shot.png"
            subprocess.run(["scrot", "-o", str(path)], env=env, check=True)
            image = Image.open(path)
            image = image.resize((1280, 720), Image.Resampling.LANCZOS)
            image.save(io.BytesIO(), "PNG")

    print(row("act: 3 steps + settle + screenshot (SDK, server)", measure(ours, rounds, 1)))
    last = steps_done[-1]
    print(f"    settled {last['settled']}, settle {last['settle_ms']} ms, changed "
          f"{last['changed']}, {len(last['changed_regions'])} regions")  # fmt: skip
    if shutil.which("scrot") and shutil.which("xdotool"):
        print(row("reference loop: xdotool x3 + 2 s sleeps + scrot/PNG",
                  measure(reference, reference_rounds, 0)))  # fmt: skip
    else:
        print("reference loop: needs xdotool and scrot (apt-get install xdotool scrot)")


def _rapidocr(python: str, image: Path, rounds: int) -> tuple[list[float], str] | None:
    script = (
        "import sys, time, json\n"
        "from rapidocr_onnxruntime import RapidOCR\n"
        "engine = RapidOCR()\n"
        "engine(sys.argv[1])\n"
        "times = []\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    t = time.perf_counter(); result, _ = engine(sys.argv[1])\n"
        "    times.append((time.perf_counter() - t) * 1000)\n"
        "print(json.dumps([times, ' '.join(r[1] for r in (result or []))]))\n"
    )
    done = subprocess.run([python, "-c", script, str(image), str(rounds)], capture_output=True,
                          text=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"})  # fmt: skip
    if done.returncode != 0:
        print(f"    RapidOCR failed: {done.stderr.strip()[-200:]}")
        return None
    times, text = json.loads(done.stdout.strip().splitlines()[-1])
    return times, text


def bench_ocr(device: Any, env: dict[str, str], rounds: int, rapid: str | None) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        for label, geometry, size, count, per_line, full in (
            ("400x300 region, 13 px", (300, 200, 400, 300), 13, 12, 5, False),
            ("1080p screen, 14 px", (0, 0, 1900, 1000), 14, 40, 16, True),
        ):
            lines = _lines(rng, count, per_line)
            drawn = sum(len(line.split()) for line in lines)
            proc, area = _words_window(env, *geometry, size, lines)
            try:
                region = None if full else (area[0], area[1], 400, 300)
                last: dict[str, Any] = {}

                def ours(
                    region: tuple[int, int, int, int] | None = region,
                    last: dict[str, Any] = last,
                ) -> None:
                    last.update(device.ocr(region=region))

                samples = measure(ours, rounds, 1)
                print(row(f"OCR {label} - remotehands (tesserocr)", samples))
                print(f"    words found {_found(lines, last['text'])}/{drawn}, upscale "
                      f"{last['upscale']}")  # fmt: skip
                shot = (device.screenshot_region(*region, format="png") if region
                        else device.screenshot(format="png"))  # fmt: skip
                image = Path(folder) / f"{label.split()[0]}.png"
                image.write_bytes(shot.image)
                cli_text: list[str] = []

                def cli(image: Path = image, cli_text: list[str] = cli_text) -> None:
                    done = subprocess.run(["tesseract", str(image), "-"], capture_output=True,
                                          text=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"})  # fmt: skip
                    cli_text[:] = [done.stdout]

                print(
                    row(
                        f"OCR {label} - tesseract CLI (PNG file)",
                        measure(cli, max(1, rounds // 2), 0),
                    )
                )
                print(f"    words found {_found(lines, cli_text[0])}/{drawn} (no upscale)")
                if rapid:
                    answer = _rapidocr(rapid, image, 1 if full else rounds)
                    if answer is not None:
                        print(row(f"OCR {label} - RapidOCR (onnxruntime)", answer[0]))
                        print(f"    words found {_found(lines, answer[1])}/{drawn}")
            finally:
                proc.terminate()
                proc.wait(10)


TEXT_100 = ("The quick brown fox jumps over the lazy dog 0123456789 " * 2)[:100]


def _input_rows(clients: dict[str, Any], rounds: int) -> None:
    """Move, click and type 100 characters through each of ``clients`` (label -> SDK device,
    agent client or peer), in turns."""
    spots = iter(range(10**9))
    actions = {
        "move": lambda h: h.move(100 + next(spots) % 500, 200),
        "click": lambda h: h.click(1900, 1070),
        "type 100 chars": lambda h: h.type(TEXT_100),
    }
    for action, call in actions.items():
        count = rounds if action != "type 100 chars" else max(5, rounds // 5)
        timed = measure_together(
            {label: (lambda h=h, c=call: c(h)) for label, h in clients.items()}, count,
            warmup=5 if action != "type 100 chars" else 1,
        )  # fmt: skip
        for label, samples in timed.items():
            print(row(f"{action} - {label}", samples))


def bench_hop(
    info: dict[str, Any], rounds: int, cua: str | None = None, env: dict[str, str] | None = None
) -> None:
    """Input through the server: a request per action, over HTTP and against one WebSocket per
    device, in turns; with ``cua``, in turns with cua's computer server (pyautogui's pause off)
    on the same desktop (``env``: its DISPLAY and XAUTHORITY, else the demo's), so that the hop
    meets the peer under the same load."""
    with (
        FleetClient(info["url"], token=info["token"]) as over_http,
        FleetClient(info["url"], token=info["token"], websocket=True) as over_ws,
        contextlib.ExitStack() as stack,
    ):
        clients: dict[str, Any] = {"SDK via server, HTTP": over_http.device(info["device_name"]),
                                   "SDK via server, WebSocket": over_ws.device(info["device_name"])}  # fmt: skip
        if cua:
            clients[f"cua {_cua_version(cua)} WS, pyautogui pause 0"] = stack.enter_context(
                _cua_server(cua, env or _x_env(info), CUA_NO_PAUSE)
            )
        print(f"load average {os.getloadavg()[0]:.2f}")
        _input_rows(clients, rounds)


def bench_hop_split(rounds: int, cua: str | None) -> None:
    """:func:`bench_hop` as deployed: the fleet server and the x11 agent as two processes (the
    demo runs both in one, where they share one interpreter lock)."""
    from remotehands.agent.desktop import VirtualDesktop

    procs: list[subprocess.Popen[bytes]] = []
    with VirtualDesktop(size=(1920, 1080)) as desktop, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **desktop.env, "REMOTEHANDS_OWNER_PASSWORD": "bench-owner-pw"}
        try:
            data = Path(tmp) / "server"
            subprocess.run([REMOTEHANDS, "server", "init", "--data", str(data)], env=env,
                           check=True, capture_output=True)  # fmt: skip
            url = f"http://127.0.0.1:{free_port()}"
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "server", "--data", str(data), "--listen", url.split("//")[1],
                 "--log-level", "warning"], env=env))  # fmt: skip
            wait_for(lambda: is_up(url), "the server start")
            session = httpx.post(url + "/v1/auth/login", timeout=30,
                                 json={"username": "owner", "password": "bench-owner-pw"})  # fmt: skip
            with FleetClient(url, token=session.json()["token"]) as owner:
                token = owner.tokens_create("bench", role="operator")["token"]
                enrollment = owner.enrollment_create()["token"]
            procs.append(subprocess.Popen(
                [REMOTEHANDS, "agent", "--driver", "x11", "--display", str(desktop.display),
                 "--server", url, "--token", enrollment, "--name", "hop-desktop",
                 "--state-dir", str(Path(tmp) / "agent")],
                env=env))  # fmt: skip
            with FleetClient(url, token=token) as fleet:
                wait_for(lambda: any(d["name"] == "hop-desktop" for d in fleet.devices(
                    status="online")), "the agent enrolment")  # fmt: skip
            print("server and agent as two processes (as deployed)")
            bench_hop({"url": url, "token": token, "device_name": "hop-desktop"}, rounds, cua, env)
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(15)


async def _mcp_vs_sdk(info: dict[str, Any], device_name: str, rounds: int) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from remotehands.client import AsyncFleetClient

    env = {**os.environ, "REMOTEHANDS_URL": info["url"], "REMOTEHANDS_TOKEN": info["token"]}
    params = StdioServerParameters(command=REMOTEHANDS, args=["mcp"], env=env)
    async with (
        Client(params, read_timeout_seconds=30) as client,
        AsyncFleetClient(info["url"], token=info["token"]) as fleet,
    ):
        device = fleet.device(device_name)

        async def timed(call: Any) -> list[float]:
            for _ in range(3):
                await call()
            samples = []
            for _ in range(rounds):
                started = time.perf_counter()
                await call()
                samples.append((time.perf_counter() - started) * 1000)
            return samples

        async def tool() -> None:
            result = await client.call_tool("screenshot", {"device": device_name})
            assert not result.is_error

        async def sdk() -> None:
            shot = await device.screenshot(scale=1280 / 1920)
            assert shot.image[:2] == b"\xff\xd8"

        print(row("screenshot 1280 px - MCP tool (stdio)", await timed(tool)))
        print(row("screenshot 1280 px - SDK (async, HTTP)", await timed(sdk)))


class CuaClient:
    """cua's computer server over its WebSocket (``/ws``): one JSON command, one JSON answer."""

    def __init__(self, port: int) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self._conn = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None)
        )

    def _call(self, command: str, **params: Any) -> None:
        self._conn.send(json.dumps({"command": command, "params": params}))
        answer = json.loads(self._conn.recv(timeout=30))
        if not answer.get("success"):
            raise RuntimeError(f"cua {command}: {answer}")

    def move(self, x: int, y: int) -> None:
        self._call("move_cursor", x=x, y=y)

    def click(self, x: int, y: int) -> None:
        self._call("left_click", x=x, y=y)

    def type(self, text: str) -> None:
        self._call("type_text", text=text)

    def close(self) -> None:
        self._stack.close()


def _cua_version(python: str) -> str:
    found = subprocess.run([python, "-c", "import importlib.metadata as m; "
                            "print(m.version('cua-computer-server'))"],
                           capture_output=True, text=True)  # fmt: skip
    return found.stdout.strip() or "?"


def bench_input(rounds: int, cua: str | None, cua_rounds: int) -> None:
    """Move, click and type 100 characters direct to an agent on its own desktop, over HTTP
    and the WebSocket, in turns with cua's computer server (pyautogui's pause off) on the same
    desktop when ``cua`` names a Python that has it; then cua as installed, on its own (its
    pause makes a call 0.1-0.2 s)."""
    from remotehands.agent.desktop import VirtualDesktop
    from remotehands.client import AgentClient

    with VirtualDesktop(size=(1920, 1080)) as desktop, contextlib.ExitStack() as stack:
        port = free_port()
        env = {**os.environ, **desktop.env, "REMOTEHANDS_AGENT_PASSWORD": "bench"}
        agent = subprocess.Popen([REMOTEHANDS, "agent", "--driver", "x11", "--display",
                                  str(desktop.display), "--listen", f"127.0.0.1:{port}"],
                                 env=env)  # fmt: skip
        stack.callback(agent.wait, 10)
        stack.callback(agent.terminate)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: is_up(base), "the agent")
        over_http = stack.enter_context(AgentClient(base, password="bench"))
        over_ws = stack.enter_context(AgentClient(base, password="bench", websocket=True))
        clients: dict[str, Any] = {"SDK direct, HTTP": over_http, "SDK direct, WebSocket": over_ws}
        if cua:
            version = _cua_version(cua)
            clients[f"cua {version} WS, pyautogui pause 0"] = stack.enter_context(
                _cua_server(cua, env, CUA_NO_PAUSE)
            )
        print(f"load average {os.getloadavg()[0]:.2f}")
        _input_rows(clients, rounds)
        # The agent's own time for each typing (its action log): what is left of a call's
        # time is the transport's.
        typed = [e["duration_ms"] for e in over_http.actions(limit=1000)
                 if e["action"] == "keyboard.type"]  # fmt: skip
        print(row("type 100 chars - on the agent (its log)", typed))
        if cua:
            with _cua_server(cua, env, CUA_AS_INSTALLED) as installed:
                _input_rows({f"cua {version} WS, as installed": installed}, cua_rounds)


# cua's server as installed: pyautogui sleeps its PAUSE (0.1 s) after every call it makes.
CUA_AS_INSTALLED = "import runpy; runpy.run_module('computer_server', run_name='__main__')"
# The same with pyautogui's pause off, the floor of its transport and of its input library.
CUA_NO_PAUSE = "import pyautogui; pyautogui.PAUSE = 0; " + CUA_AS_INSTALLED


@contextlib.contextmanager
def _cua_server(python: str, env: dict[str, str], code: str) -> Iterator[CuaClient]:
    """cua's computer server on the desktop of ``env``, and a client of its WebSocket."""
    # cua's server takes CONTAINER_NAME for its cloud mode (an authentication handshake and a
    # watchdog that pings the cloud): run it as on a desktop of one's own.
    env = {key: value for key, value in env.items() if key != "CONTAINER_NAME"}
    port = free_port()
    server = subprocess.Popen([python, "-c", code, "--host", "127.0.0.1", "--port", str(port),
                               "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/status"), "cua's server")
        client = CuaClient(port)
        try:
            yield client
        finally:
            client.close()
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference-rounds", type=int, default=1)
    parser.add_argument("--ocr-rounds", type=int, default=5)
    parser.add_argument("--mcp-rounds", type=int, default=20)
    parser.add_argument("--rapidocr", metavar="PYTHON", help="A Python with rapidocr_onnxruntime.")
    parser.add_argument(
        "--cua", metavar="PYTHON", help="A Python with cua-computer-server, run beside the agent."
    )
    parser.add_argument("--cua-rounds", type=int, default=20)
    parser.add_argument("--only", choices=["act", "ocr", "mcp", "input", "hop", "hop-split"],
                        action="append")  # fmt: skip
    args = parser.parse_args()
    parts = set(args.only or ["act", "ocr", "mcp", "input", "hop", "hop-split"])
    if "input" in parts:
        bench_input(args.mcp_rounds * 10, args.cua, args.cua_rounds)
    if "hop-split" in parts:
        bench_hop_split(args.mcp_rounds * 10, args.cua)
    parts -= {"input", "hop-split"}
    if not parts:
        return
    with tempfile.TemporaryDirectory() as data:
        demo, info = _start_demo(Path(data))
        try:
            env = _x_env(info)
            print(f"remotehands demo: {info['url']}, device {info['device_name']} on "
                  f"{info['display']} (1920x1080)")  # fmt: skip
            with FleetClient(info["url"], token=info["token"], timeout=120) as fleet:
                device = fleet.device(info["device_name"])
                if "act" in parts:
                    bench_act(device, env, args.rounds, args.reference_rounds)
                if "ocr" in parts:
                    bench_ocr(device, env, args.ocr_rounds, args.rapidocr)
            if "hop" in parts:
                bench_hop(info, args.mcp_rounds * 10, args.cua)
            if "mcp" in parts:
                asyncio.run(_mcp_vs_sdk(info, info["device_name"], args.mcp_rounds))
        finally:
            demo.terminate()
            demo.wait(20)


if __name__ == "__main__":
    main()
