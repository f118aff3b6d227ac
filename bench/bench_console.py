"""The web console in a real Chromium, on loopback, against a 1920x1080 desktop: H.264 against
JPEG rectangles against whole JPEG frames, side by side in one run.

    .venv/bin/python bench/bench_console.py [--seconds 6] [--keys 25] [--codecs h264,jpeg]

``remotehands server`` and ``remotehands agent --driver x11`` as processes on an Xvfb
1920x1080 desktop with openbox and a full-screen xterm; Debian's Chromium (headless, through
Playwright) signed in as the owner opens ``/console/{id}?codec=...`` for each codec and
measures, from the page's own figures (``window.__console.screen.stats``):

1. **frames a second painted** on the canvas while a second full-screen terminal scrolls text
   without pause (goal: at least 30), and the **server's CPU** (and the agent's) meanwhile, per
   watched console;
2. **input to visible**: a key pressed in the browser (its ``keydown`` time in the page) until
   the frame it changed is drawn on the canvas, one key at a time into the idle terminal (floor
   ~22 ms in PERFORMANCE.md; goal: median at most 45 ms);
3. **bandwidth while typing** in the terminal, eight keys a second (goal with H.264: at most
   0.5 Mbit/s), and the server's CPU meanwhile.

Prints medians (min, max). Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import Client, free_port, is_up, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.desktop import VirtualDesktop  # noqa: E402

REMOTEHANDS = str(ROOT / ".venv/bin/remotehands")
OWNER_PASSWORD = "bench-owner-pw"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
CODECS = ("h264", "jpeg-rect", "jpeg")
FLOOR_MS = 21.8
"""Key press to decoded frame at a viewer, median, on this kind of machine (PERFORMANCE.md)."""

STATS = "() => window.__console && window.__console.screen.stats"
# Installed in every page: the time of each keydown, caught before the console's own handler.
KEY_TIMES = """
window.__keyTimes = [];
window.addEventListener("keydown", () => window.__keyTimes.push(performance.now()), true);
"""
# Waits until a frame is painted after the last keydown; answers the milliseconds between.
AFTER_KEY = """async () => {
  const pressed = window.__keyTimes[window.__keyTimes.length - 1];
  const stats = window.__console.screen.stats;
  const deadline = performance.now() + 2000;
  while (stats.lastPaint <= pressed) {
    if (performance.now() > deadline) return null;
    await new Promise((r) => setTimeout(r, 1));
  }
  return stats.lastPaint - pressed;
}"""


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def start_fleet(tmp: Path, env: dict[str, str], display: str) -> tuple[
    list[subprocess.Popen[bytes]], str, str, str
]:  # fmt: skip
    """The server and the agent as processes: (processes, url, session, device id)."""
    procs: list[subprocess.Popen[bytes]] = []
    data = tmp / "server"
    subprocess.run([REMOTEHANDS, "server", "init", "--data", str(data)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.append(subprocess.Popen(
        [REMOTEHANDS, "server", "--data", str(data), "--listen", f"127.0.0.1:{port}",
         "--log-level", "warning"], env=env))  # fmt: skip
    wait_for(lambda: is_up(url), "the server start")
    session = httpx.post(url + "/v1/auth/login",
                         json={"username": "owner", "password": OWNER_PASSWORD}
                         ).json()["token"]  # fmt: skip
    auth = {"Authorization": f"Bearer {session}"}
    token = httpx.post(url + "/v1/devices/enrollment", json={}, headers=auth).json()["token"]
    procs.append(subprocess.Popen(
        [REMOTEHANDS, "agent", "--driver", "x11", "--display", display, "--server", url,
         "--token", token, "--state-dir", str(tmp / "agent")],
        env={**env, "MALLOC_MMAP_THRESHOLD_": "67108864",
             "MALLOC_TRIM_THRESHOLD_": "268435456"}))  # fmt: skip
    fleet = Client(port, session)

    def online() -> bool:
        return bool(json.loads(fleet.call("GET", "/v1/devices?status=online"))["devices"])

    wait_for(online, "the agent enrolment")
    device = json.loads(fleet.call("GET", "/v1/devices"))["devices"][0]["id"]
    fleet.close()
    return procs, url, session, str(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds a measurement")
    parser.add_argument("--keys", type=int, default=25, help="keys timed for the latency")
    parser.add_argument("--codecs", default=",".join(CODECS),
                        help="codecs to measure, comma-separated (default: all three)")  # fmt: skip
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with VirtualDesktop(size=(1920, 1080), terminal=False) as desktop, \
            tempfile.TemporaryDirectory() as tmp_name:  # fmt: skip
        tmp = Path(tmp_name)
        assert desktop.display is not None
        env = {**os.environ, **desktop.env, "REMOTEHANDS_OWNER_PASSWORD": OWNER_PASSWORD}
        xterm = ["xterm", "-geometry", "240x70+0+0", "-fa", "DejaVu Sans Mono", "-fs", "10"]
        typing = subprocess.Popen([*xterm, "-T", "typing", "-e", "sh"], env=env)
        procs, url, _session, device = start_fleet(tmp, env, desktop.display)
        server, agent = psutil.Process(procs[0].pid), psutil.Process(procs[1].pid)
        results: dict[str, dict[str, Any]] = {}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=CHROMIUM_ARGS)  # fmt: skip
                for codec in args.codecs.split(","):
                    results[codec] = run_codec(browser, url, device, codec, xterm, env, args,
                                               server, agent)  # fmt: skip
                browser.close()
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    # The figures are taken: a process slow to stop must not lose them.
                    print(f"process {proc.pid} did not stop within 15 s of SIGTERM: killed",
                          file=sys.stderr)  # fmt: skip
                    proc.kill()
                    proc.wait(10)
            typing.terminate()
            typing.wait(10)
        report(results, args)


def run_codec(
    browser: Any, url: str, device: str, codec: str, xterm: list[str], env: dict[str, str],
    args: argparse.Namespace, server: psutil.Process, agent: psutil.Process,
) -> dict[str, Any]:  # fmt: skip
    """The three measurements with one codec."""
    context = browser.new_context(base_url=url, viewport={"width": 1600, "height": 1000})
    signed = context.request.post(
        "/v1/auth/web/signin", data={"username": "owner", "password": OWNER_PASSWORD}
    )
    assert signed.ok, signed.text()
    page = context.new_page()
    page.add_init_script(KEY_TIMES)
    page.goto(f"/console/{device}?codec={codec}")
    page.wait_for_function("() => window.__console && window.__console.screen.stats.painted > 0")
    got: dict[str, Any] = {"codec": page.evaluate(STATS)["codec"]}

    # 1. Continuous change: a second full-screen terminal scrolling text.
    scroller = subprocess.Popen(
        [*xterm, "-T", "scroll", "-e", "sh", "-c", "while :; do ls -la /usr/lib /usr/share/doc; done"],
        env=env)  # fmt: skip
    time.sleep(1.5)  # the terminal maps and fills the screen: the stream is at its pace
    fps: list[float] = []
    cpu_server: list[float] = []
    cpu_agent: list[float] = []
    received: list[float] = []
    for _ in range(3):
        start_stats = page.evaluate(STATS)
        before = start_stats["painted"]
        s0, a0, t0 = cpu_seconds(server), cpu_seconds(agent), time.perf_counter()
        time.sleep(args.seconds / 3)
        elapsed = time.perf_counter() - t0
        end_stats = page.evaluate(STATS)
        fps.append((end_stats["painted"] - before) / elapsed)
        received.append((end_stats["frames"] - start_stats["frames"]) / elapsed)
        cpu_server.append((cpu_seconds(server) - s0) / elapsed * 100)
        cpu_agent.append((cpu_seconds(agent) - a0) / elapsed * 100)
    scroller.terminate()
    scroller.wait(10)
    got.update(fps=fps, received=received, cpu_server_scroll=cpu_server, cpu_agent_scroll=cpu_agent)

    # 2. Input to visible, one key at a time into the idle terminal.
    canvas = page.locator("#screen")
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    time.sleep(0.5)
    latencies: list[float] = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(args.keys):
        page.keyboard.press(letters[i % len(letters)])
        waited = page.evaluate(AFTER_KEY)
        if waited is not None:
            latencies.append(float(waited))
        time.sleep(0.12)  # the screen settles: the next key's frame is its own
    page.keyboard.press("Control+u")  # the shell's line is cleared for the next codec
    got["latency"] = latencies

    # 3. Bandwidth while typing, eight keys a second.
    time.sleep(0.5)
    bytes0 = page.evaluate(STATS)["bytes"]
    s0, t0 = cpu_seconds(server), time.perf_counter()
    typed = 0
    while time.perf_counter() - t0 < args.seconds:
        page.keyboard.press(letters[typed % len(letters)])
        typed += 1
        if typed % 60 == 0:
            page.keyboard.press("Control+u")
        time.sleep(0.125)
    elapsed = time.perf_counter() - t0
    got["mbit"] = (page.evaluate(STATS)["bytes"] - bytes0) * 8 / elapsed / 1e6
    got["cpu_server_typing"] = (cpu_seconds(server) - s0) / elapsed * 100
    page.keyboard.press("Control+u")
    final = page.evaluate(STATS)
    got["errors"], got["keyframes"] = final["errors"], final["keyframes"]
    got["skipped"] = final.get("skipped", 0)
    context.close()
    return got


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nChromium (headless) on loopback, Xvfb 1920x1080; {args.seconds:g} s a measurement, "
          f"{args.keys} keys timed")  # fmt: skip
    for codec, got in results.items():
        name = f"{codec} ({got['codec']})" if got["codec"] != codec else codec
        print(f"\n[{name}]")
        print(row("frames painted a second, screen scrolling", got["fps"], width=50,
                  unit="fps", digits=1))  # fmt: skip
        print(row("frames received a second, screen scrolling", got["received"], width=50,
                  unit="fps", digits=1))  # fmt: skip
        print(f"{'decoder errors, key frames, backlogs skipped':<50} {got['errors']}, "
              f"{got['keyframes']}, {got['skipped']}")  # fmt: skip
        print(row("server CPU while scrolling (one console)", got["cpu_server_scroll"], width=50,
                  unit="%", digits=1))  # fmt: skip
        print(row("agent CPU while scrolling", got["cpu_agent_scroll"], width=50, unit="%",
                  digits=1))  # fmt: skip
        if got["latency"]:
            print(row("key in the browser -> frame painted", got["latency"], width=50))
        print(f"{'bandwidth while typing 8 keys/s':<50} {got['mbit']:8.3f} Mbit/s")
        print(f"{'server CPU while typing':<50} {got['cpu_server_typing']:8.1f} %")
    print("\nside by side (medians)")
    print(f"{'':<34}" + "".join(f"{c:>12}" for c in results))
    lines = [
        ("frames/s painted, scrolling", lambda g: statistics.median(g["fps"]), "{:12.1f}"),
        ("key -> painted, ms", lambda g: statistics.median(g["latency"]) if g["latency"]
         else float("nan"), "{:12.1f}"),
        ("Mbit/s while typing", lambda g: g["mbit"], "{:12.3f}"),
        ("server CPU % scrolling", lambda g: statistics.median(g["cpu_server_scroll"]),
         "{:12.1f}"),
        ("server CPU % typing", lambda g: g["cpu_server_typing"], "{:12.1f}"),
    ]  # fmt: skip
    for label, value, fmt in lines:
        print(f"{label:<34}" + "".join(fmt.format(value(g)) for g in results.values()))
    print(f"{'floor, key -> decoded (PERFORMANCE)':<34}{FLOOR_MS:12.1f} ms")


if __name__ == "__main__":
    main()
