"""The Openctrol face's ``/ws/desktop``: frames a second, bytes a frame, the agent's CPU with one
and with five viewers, and input-to-new-frame latency, on loopback.

    .venv/bin/python bench/bench_openctrol.py [--seconds 6] [--samples 40] [--changer counter]

``remotehands agent --driver x11 --face openctrol`` runs as a process on an Xvfb 1920x1080
desktop.

1. **Stream.** A full-screen terminal lists directories without pause (the screen changes all
   the time, but only when the terminal repaints: not on every grab of a 30/s stream), or with
   ``--changer counter`` a window that redraws a counter and a moving bar 120 times a second
   (``counter_window.py``: every grab finds a change); one viewer, then five at once, read ``/ws/desktop`` for ``--seconds`` each: frames
   a second per viewer, KiB a frame (OFRA header included), and the agent process's CPU (% of
   one core). Beside it, in the same run, the peer a client would otherwise use: a loop of
   ``GET /screenshot`` (JPEG q75) on the agent's native face, one keep-alive connection.
2. **Latency.** An idle terminal has the focus; the viewer sends a ``text`` message (one
   character) and waits for the next frame, decoded (the screen is otherwise still, so that
   frame is the echo), ``--samples`` times. The floor in PERFORMANCE.md: key press -> through the
   server -> agent -> repaint -> new frame decoded, 21.8 ms median.

Prints medians (min, max). Figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from common import Client, free_port, is_up, measure, row, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotehands.agent.desktop import VirtualDesktop  # noqa: E402

REMOTEHANDS = str(ROOT / ".venv/bin/remotehands")
PASSWORD = "bench-openctrol-pw"
HA = "bench"
WIDTH = 48


def _session(url: str) -> str:
    response = httpx.post(url + "/api/v1/sessions/desktop", json={"HaId": HA, "TtlSeconds": 900},
                          headers={"X-Openctrol-Key": PASSWORD}, timeout=10)  # fmt: skip
    response.raise_for_status()
    ws_url: str = response.json()["websocket_url"]
    return ws_url


async def _watch(url: str, seconds: float) -> tuple[int, list[float], float]:
    """One viewer for ``seconds``: frames, KiB each, the time it watched."""
    from websockets.asyncio.client import connect

    async with connect(_session(url), compression=None, max_size=None) as ws:
        await ws.recv()  # hello
        while not isinstance(await ws.recv(), bytes):  # the first frame: the stream is up
            pass
        sizes: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            message = await ws.recv()
            if isinstance(message, bytes):
                sizes.append(len(message) / 1024)
        return len(sizes), sizes, time.perf_counter() - started


def bench_stream(url: str, agent: psutil.Process, seconds: float) -> None:
    for viewers in (1, 5):
        before = agent.cpu_times()
        started = time.perf_counter()
        results = asyncio.run(_gather(url, seconds, viewers))
        wall = time.perf_counter() - started
        after = agent.cpu_times()
        cpu = ((after.user - before.user) + (after.system - before.system)) / wall * 100
        fps = [count / took for count, _, took in results]
        sizes = [size for _, frame_sizes, _ in results for size in frame_sizes]
        label = f"{viewers} viewer{'s' if viewers > 1 else ''}"
        print(row(f"/ws/desktop {label} - frames a second each", fps, WIDTH, "fps", 1))
        print(row(f"/ws/desktop {label} - frame size", sizes, WIDTH, "KiB", 1))
        print(f"{f'/ws/desktop {label} - agent CPU':<{WIDTH}} {cpu:8.1f} % of one core")


async def _gather(url: str, seconds: float, viewers: int) -> list[tuple[int, list[float], float]]:
    return list(await asyncio.gather(*(_watch(url, seconds) for _ in range(viewers))))


async def _latency(url: str, samples: int) -> list[float]:
    import simplejpeg
    from websockets.asyncio.client import connect

    from remotehands.drivers.openctrol.client import parse_ofra

    found: list[float] = []
    async with connect(_session(url), compression=None, max_size=None) as ws:
        await ws.recv()  # hello
        await ws.recv()  # the first frame
        for i in range(samples + 3):
            # drain what is in flight, then wait for a still screen
            with_quiet = True
            while with_quiet:
                try:
                    await asyncio.wait_for(ws.recv(), 0.15)
                except TimeoutError:
                    with_quiet = False
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "text", "text": "x" if i % 2 else "y"}))
            while not isinstance(message := await ws.recv(), bytes):
                pass
            _, _, _, jpeg = parse_ofra(message)
            simplejpeg.decode_jpeg(jpeg, colorspace="BGRA")
            if i >= 3:
                found.append((time.perf_counter() - started) * 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--changer", choices=["terminal", "counter"], default="terminal",
                        help="What changes the screen for the stream figures.")  # fmt: skip
    parser.add_argument("--stream-only", action="store_true",
                        help="Only the stream figures (no peer, no latency).")  # fmt: skip
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with VirtualDesktop(size=(1920, 1080)) as desktop:
        env = {**os.environ, **desktop.env, "REMOTEHANDS_AGENT_PASSWORD": PASSWORD,
               "MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}  # fmt: skip
        try:
            if args.changer == "counter":
                scroller = subprocess.Popen(
                    [sys.executable, str(ROOT / "bench/counter_window.py"), "--rate", "120"],
                    env=env,
                )
                changer = "a window redrawing a counter 120 times a second"
            else:
                scroller = subprocess.Popen(
                    ["xterm", "-geometry", "240x70+0+0", "-fa", "DejaVu Sans Mono", "-fs", "10",
                     "-e", "sh", "-c", "while :; do ls -la /usr/lib /usr/share/doc; done"],
                    env=env,
                )  # fmt: skip
                changer = "a full-screen terminal listing directories"
            procs.append(scroller)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            agent = subprocess.Popen(
                [REMOTEHANDS, "agent", "--driver", "x11", "--display", str(desktop.display),
                 "--listen", f"127.0.0.1:{port}", "--face", "openctrol",
                 "--openctrol-allow-ha-id", HA], env=env,
            )  # fmt: skip
            procs.append(agent)
            wait_for(lambda: is_up(url), "the agent start")
            print(f"Xvfb 1920x1080, {changer}; {args.seconds:g} s a round; load average "
                  f"{os.getloadavg()[0]:.2f}")  # fmt: skip
            bench_stream(url, psutil.Process(agent.pid), args.seconds)
            if args.stream_only:
                return

            token = httpx.post(url + "/auth/login", json={"password": PASSWORD}).json()["token"]
            native = Client(port, token)
            shots = measure(lambda: native.call("GET", "/screenshot?format=jpeg&quality=75"),
                            max(20, int(args.seconds * 10)))  # fmt: skip
            native.close()
            print(row("peer: GET /screenshot loop - per frame", shots, WIDTH))
            print(f"{'peer: GET /screenshot loop - frames a second':<{WIDTH}} median "
                  f"{1000 / statistics.median(shots):8.1f} fps")  # fmt: skip

            scroller.terminate()
            scroller.wait(10)
            procs.remove(scroller)
            idle = subprocess.Popen(
                ["xterm", "-geometry", "80x24+100+100", "-fa", "DejaVu Sans Mono", "-fs", "12",
                 "-e", "cat"], env=env,
            )  # fmt: skip
            procs.append(idle)
            time.sleep(1.5)  # the terminal maps and takes the focus; a bench, not a test
            latency = asyncio.run(_latency(url, args.samples))
            print(row("text message -> new frame decoded", latency, WIDTH))
            p90 = statistics.quantiles(latency, n=10)[8]
            print(f"{'text message -> new frame decoded, p90':<{WIDTH}} {p90:15.2f} ms")
            print(
                f"{'floor (PERFORMANCE.md, key -> frame via server)':<{WIDTH}} median    21.80 ms"
            )
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(15)


if __name__ == "__main__":
    main()
