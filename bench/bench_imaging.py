"""Imaging and change-detection costs on a synthetic 1080p desktop, beside naive peers.

Run: ``.venv/bin/python bench/bench_imaging.py [repeats]``. Prints median, min and max in ms;
it asserts nothing about time.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

import common
import numpy as np
from PIL import Image, ImageDraw

from remotehands.agent import imaging
from remotehands.agent.stability import FrameDiff

WIDTH, HEIGHT = 1920, 1080


def desktop(seed: int = 0) -> np.ndarray:
    """Windows full of text, a terminal, a photo-like gradient with grain; BGRX."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (WIDTH, HEIGHT), (236, 236, 236))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, 28), fill=(40, 44, 52))
    draw.rectangle((60, 80, 1000, 1000), fill=(255, 255, 255), outline=(120, 120, 120))
    for row in range(90):
        words = " ".join(
            "".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(2, 10)))
            for _ in range(14)
        )
        draw.text((70, 90 + row * 10), words, fill=(20, 20, 20))
    draw.rectangle((1040, 80, 1880, 560), fill=(0, 0, 0))
    for row in range(45):
        draw.text((1050, 86 + row * 10), f"$ ls -la /var/log/{row:03d}  ok", fill=(80, 220, 80))
    pixels = np.asarray(image).copy()
    ys, xs = np.mgrid[0:440, 0:840]
    photo = np.stack([xs * 255 // 840, ys * 255 // 440, (xs + ys) * 255 // 1280], axis=-1)
    photo = photo + rng.integers(-12, 13, photo.shape)
    pixels[600:1040, 1040:1880] = np.clip(photo, 0, 255).astype(np.uint8)
    frame = np.empty((HEIGHT, WIDTH, 4), np.uint8)
    frame[..., :3] = pixels[..., ::-1]
    frame[..., 3] = 255
    return frame


def measure(label: str, action: Callable[[], object], repeats: int) -> None:
    """Print the times of ``action``; one untimed call first warms up buffers and caches."""
    print(common.row(label, common.measure(action, repeats, warmup=1), width=46))


def naive_ratio(a: np.ndarray, b: np.ndarray, delta: int) -> float:
    moved = (np.abs(a[..., :3].astype(np.int16) - b[..., :3].astype(np.int16)) > delta).any(axis=2)
    return float(moved.mean())


def pil_jpeg(frame: np.ndarray) -> bytes:
    image = Image.frombuffer("RGB", (WIDTH, HEIGHT), frame, "raw", "BGRX", 0, 1)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=75)
    return out.getvalue()


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    frame = desktop()
    print(f"1080p synthetic desktop, {repeats} runs each\n")

    print("encode")
    for sub in ("420", "444"):
        size = len(imaging.encode(frame, "jpeg", 75, subsampling=sub)) // 1024  # type: ignore[arg-type]
        measure(
            f"  jpeg q75 {sub} simplejpeg BGRX ({size} KiB)",
            lambda sub=sub: imaging.encode(frame, "jpeg", 75, subsampling=sub),  # type: ignore[misc]
            repeats,
        )
    measure("  peer: jpeg q75 Pillow from BGRX", lambda: pil_jpeg(frame), repeats)
    few = max(3, repeats // 6)
    png_size = len(imaging.encode(frame, "png")) // 1024
    measure(f"  png level 1 ({png_size} KiB)", lambda: imaging.encode(frame, "png"), few)
    webp_size = len(imaging.encode(frame, "webp")) // 1024
    measure(f"  webp q75 method 2 ({webp_size} KiB)", lambda: imaging.encode(frame, "webp"), few)

    print("scale")
    measure("  0.5 (block reduce)", lambda: imaging.scale(frame, 0.5, 0.5), repeats)
    measure("  2/3 -> 1280x720 (bilinear)", lambda: imaging.scale(frame, 2 / 3, 2 / 3), repeats)
    measure("  2.0 (bilinear up)", lambda: imaging.scale(frame, 2.0, 2.0), max(3, repeats // 3))
    view = frame[100:900, 200:1400]
    measure("  0.5 of a 1200x800 crop view", lambda: imaging.scale(view, 0.5, 0.5), repeats)

    print("change detection (pixel_delta 30)")
    diff = FrameDiff(HEIGHT, WIDTH, 30)
    same = frame.copy()
    cursor = frame.copy()
    cursor[500:520, 700:702] ^= 0xFF
    scrolled = np.roll(frame, 40, axis=0)
    other = desktop(seed=1)
    measure("  identical frames", lambda: diff.ratio(frame, same), repeats)
    measure("  blinking cursor (40 px)", lambda: diff.ratio(frame, cursor), repeats)
    measure("  scrolled text (whole frame)", lambda: diff.ratio(frame, scrolled), repeats)
    measure("  another desktop (whole frame)", lambda: diff.ratio(frame, other), repeats)
    masked = FrameDiff(
        HEIGHT,
        WIDTH,
        30,
        ignore=[imaging.Bounds(x=1700, y=0, width=220, height=28)],
        watch=[imaging.Bounds(x=0, y=0, width=1920, height=600)],
    )
    measure("  scrolled, watch + ignore regions", lambda: masked.ratio(frame, scrolled), repeats)
    measure("  peer: naive numpy int16 diff", lambda: naive_ratio(frame, scrolled, 30), few)
    assert abs(diff.ratio(frame, scrolled) - naive_ratio(frame, scrolled, 30)) < 1e-9
    diff.close()
    masked.close()


if __name__ == "__main__":
    main()
