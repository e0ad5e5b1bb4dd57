"""Benchmark our background removal against rembg's folder mode on 12 MP product photos.

What it measures, per image, with one u2netp session per method created before timing:

* ours:  bytes -> `remove_background(data, session, CutoutOptions(max_side=2048))` -> `encode_cutout(.., "png")` -> file
  (edge refinement on, the default)
* plain: the same with `refine=False`: the model's stretched mask as it is, what `ours` was before refinement
* rembg: bytes -> `rembg.remove(data, session=session, **folder-mode options)` -> file, exactly what
  `rembg p <in> <out>` does per file (it forwards its CLI defaults, including bgcolor=(0, 0, 0, 0))

It first draws ten deterministic 4000x3000 JPEGs (q90) of product-like shapes on studio backgrounds, warms both
methods up on one image, then times `--runs` runs over all images. It reports the median seconds per image (median
run total / images), per-run totals, the median output PNG sizes, and the agreement of the masks: our untrimmed
working-size mask against rembg's full-size alpha resized to it (bilinear), both thresholded at 128, as IoU.
The plain mask must agree with rembg's (same model, same 320 px input); the refined one departs from it on
purpose (edges moved to the photo's, holes opened, thin parts kept): `benchmarks/cutout_quality.py` measures
which of the two is right, against true masks.

Run from the repository root (takes a few minutes; keep the machine otherwise idle):

    .venv/bin/python benchmarks/cutout.py [--runs 5] [--images 10] [--out-dir DIR]

Always exits 0: the goal lines print PASS or FAIL.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
import onnxruntime
import rembg
from PIL import Image, ImageDraw, ImageFilter

from catalog_service.imaging.cutout import CutoutOptions, encode_cutout, remove_background

MODEL = "u2netp"
PHOTO_SIZE = (4000, 3000)
DRAW_SIZE = (2000, 1500)  # shapes are drawn at half size, then upscaled and given full-size sensor noise
JPEG_QUALITY = 90
OPTIONS = CutoutOptions(max_side=2048)
PLAIN_OPTIONS = CutoutOptions(max_side=2048, refine=False)
# The click defaults `rembg p` passes on to remove() as **kwargs for every file.
REMBG_FOLDER_KWARGS: dict[str, Any] = {
    "alpha_matting": False,
    "alpha_matting_foreground_threshold": 240,
    "alpha_matting_background_threshold": 10,
    "alpha_matting_erode_size": 10,
    "only_mask": False,
    "post_process_mask": False,
    "decontaminate": False,
    "vitmatte": False,
    "bgcolor": (0, 0, 0, 0),
}
BACKGROUNDS = (  # (top, bottom) of a studio sweep
    ((246, 246, 244), (232, 232, 230)),
    ((228, 229, 232), (206, 208, 212)),
    ((240, 231, 216), (222, 210, 192)),
    ((214, 227, 240), (190, 205, 222)),
    ((222, 238, 228), (200, 220, 208)),
    ((86, 88, 92), (52, 54, 58)),
    ((244, 226, 228), (226, 204, 208)),
)
TIME_GOAL = 0.5
IOU_GOAL = 0.98

UV = tuple[float, float]


class Painter:
    """Draws a product's colours and its mask together, in coordinates relative to the product's box (0..1)."""

    def __init__(self, size: tuple[int, int], box: tuple[float, float, float, float]) -> None:
        self.albedo = Image.new("RGB", size, 0)
        self.mask = Image.new("L", size, 0)
        self._draws = (ImageDraw.Draw(self.albedo), ImageDraw.Draw(self.mask))
        self._box = box

    def _xy(self, points: Sequence[UV]) -> list[tuple[float, float]]:
        x0, y0, x1, y1 = self._box
        return [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in points]

    def _both(self, shape: str, points: Sequence[UV], colour: tuple[int, int, int] | None, **kw: Any) -> None:
        xy = self._xy(points)
        if shape in ("ellipse", "rectangle", "rounded_rectangle"):
            (ax, ay), (bx, by) = xy
            xy = [(min(ax, bx), min(ay, by)), (max(ax, bx), max(ay, by))]
        for draw, fill in zip(self._draws, (colour or (0, 0, 0), 255 if colour else 0), strict=True):
            getattr(draw, shape)(xy, fill=fill, **kw)

    def poly(self, points: Sequence[UV], colour: tuple[int, int, int]) -> None:
        self._both("polygon", chaikin(points) if len(points) > 4 else points, colour)

    def ellipse(self, a: UV, b: UV, colour: tuple[int, int, int] | None) -> None:
        """A filled ellipse; colour None cuts a hole instead."""
        self._both("ellipse", (a, b), colour)

    def rect(self, a: UV, b: UV, colour: tuple[int, int, int], radius: float = 0.0) -> None:
        width = self._box[2] - self._box[0]
        self._both("rounded_rectangle", (a, b), colour, radius=int(radius * width))

    def line(self, points: Sequence[UV], colour: tuple[int, int, int], width: float) -> None:
        self._both("line", points, colour, width=max(1, int(width * (self._box[2] - self._box[0]))))


def chaikin(points: Sequence[UV], rounds: int = 3) -> list[UV]:
    """A closed polygon with its corners cut smooth."""
    pts = list(points)
    for _ in range(rounds):
        pts = [
            q
            for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1], strict=True)
            for q in ((0.75 * ax + 0.25 * bx, 0.75 * ay + 0.25 * by), (0.25 * ax + 0.75 * bx, 0.25 * ay + 0.75 * by))
        ]
    return pts


def shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, round(c * factor))) for c in rgb)  # type: ignore[return-value]


def bottle(p: Painter, c: tuple[int, int, int]) -> None:
    p.rect((0.32, 0.0), (0.68, 0.08), (30, 30, 34), radius=0.04)
    p.rect((0.36, 0.06), (0.64, 0.16), c)
    p.poly([(0.36, 0.14), (0.64, 0.14), (1.0, 0.34), (0.0, 0.34)], c)
    p.rect((0.0, 0.3), (1.0, 1.0), c, radius=0.12)
    p.rect((0.0, 0.5), (1.0, 0.8), (236, 230, 214))
    for v in (0.58, 0.63, 0.7):
        p.line([(0.15, v), (0.85, v)], shade(c, 0.6), 0.03)


def mug(p: Painter, c: tuple[int, int, int]) -> None:
    p.ellipse((0.55, 0.18), (1.0, 0.78), c)
    p.ellipse((0.66, 0.31), (0.89, 0.65), None)
    p.rect((0.0, 0.05), (0.75, 1.0), c, radius=0.06)
    p.ellipse((0.0, 0.0), (0.75, 0.1), shade(c, 0.45))


def box(p: Painter, c: tuple[int, int, int]) -> None:
    p.poly([(0.0, 0.3), (0.7, 0.3), (0.7, 1.0), (0.0, 1.0)], c)
    p.poly([(0.0, 0.3), (0.3, 0.05), (1.0, 0.05), (0.7, 0.3)], shade(c, 1.2))
    p.poly([(0.7, 0.3), (1.0, 0.05), (1.0, 0.75), (0.7, 1.0)], shade(c, 0.7))
    p.poly([(0.3, 0.3), (0.4, 0.3), (0.7, 0.05), (0.6, 0.05)], shade(c, 1.05))
    p.rect((0.12, 0.5), (0.5, 0.75), (245, 245, 240))


def shoe(p: Painter, c: tuple[int, int, int]) -> None:
    upper = [(0.0, 0.8), (0.02, 0.5), (0.3, 0.38), (0.42, 0.02), (0.72, 0.0), (0.78, 0.4), (0.98, 0.55), (1.0, 0.8)]
    p.poly(upper, c)
    p.rect((0.0, 0.76), (1.0, 1.0), (238, 238, 236), radius=0.05)
    for i in range(5):
        u, v = 0.36 + 0.045 * i, 0.4 - 0.07 * i
        p.line([(u, v), (u + 0.12, v + 0.05)], (240, 240, 240), 0.012)


def lamp(p: Painter, c: tuple[int, int, int]) -> None:
    p.rect((0.46, 0.38), (0.54, 0.94), (150, 150, 155))
    p.ellipse((0.15, 0.88), (0.85, 1.0), (60, 60, 64))
    p.poly([(0.15, 0.0), (0.85, 0.0), (1.0, 0.42), (0.0, 0.42)], c)


def vase(p: Painter, c: tuple[int, int, int]) -> None:
    half = [(0.0, 0.3), (0.08, 0.26), (0.22, 0.2), (0.5, 0.46), (0.78, 0.5), (0.96, 0.36), (1.0, 0.3)]
    right = [(0.5 + w, v) for v, w in half]
    left = [(0.5 - w, v) for v, w in reversed(half)]
    p.poly(right + left, c)


def teapot(p: Painter, c: tuple[int, int, int]) -> None:
    p.ellipse((0.0, 0.3), (0.34, 0.82), c)
    p.ellipse((0.07, 0.41), (0.27, 0.71), None)
    p.poly([(0.72, 0.62), (0.95, 0.28), (1.0, 0.26), (0.98, 0.34), (0.82, 0.82)], c)
    p.ellipse((0.18, 0.2), (0.82, 1.0), c)
    p.ellipse((0.34, 0.12), (0.66, 0.3), shade(c, 0.85))
    p.ellipse((0.46, 0.02), (0.54, 0.14), shade(c, 0.7))


def chair(p: Painter, c: tuple[int, int, int]) -> None:
    wood = (120, 84, 52)
    for u0, u1 in ((0.08, 0.04), (0.92, 0.96), (0.22, 0.24), (0.78, 0.76)):
        p.line([(u0, 0.6), (u1, 1.0)], wood, 0.04)
    p.line([(0.14, 0.0), (0.12, 0.6)], wood, 0.045)
    p.line([(0.86, 0.0), (0.88, 0.6)], wood, 0.045)
    p.rect((0.12, 0.04), (0.88, 0.34), c, radius=0.04)
    p.poly([(0.06, 0.56), (0.94, 0.56), (1.0, 0.66), (0.0, 0.66)], c)


def backpack(p: Painter, c: tuple[int, int, int]) -> None:
    p.ellipse((0.38, 0.0), (0.62, 0.16), c)
    p.ellipse((0.43, 0.04), (0.57, 0.12), None)
    p.rect((0.0, 0.08), (1.0, 1.0), c, radius=0.3)
    p.rect((0.15, 0.55), (0.85, 0.95), shade(c, 0.8), radius=0.12)
    p.line([(0.15, 0.62), (0.85, 0.62)], (20, 20, 22), 0.015)


def plant(p: Painter, c: tuple[int, int, int]) -> None:
    for angle, length in ((-60, 0.55), (-30, 0.62), (-5, 0.66), (20, 0.6), (48, 0.55), (-80, 0.4), (75, 0.42)):
        a = math.radians(angle)
        tip = (0.5 + length * math.sin(a) * 0.8, 0.62 - length * math.cos(a))
        mid = ((0.5 + tip[0]) / 2, (0.62 + tip[1]) / 2)
        normal = (0.07 * math.cos(a), 0.07 * math.sin(a))
        leaf = [(0.5, 0.62), (mid[0] + normal[0], mid[1] + normal[1]), tip, (mid[0] - normal[0], mid[1] - normal[1])]
        p.poly(leaf + [(0.5, 0.62)], shade((60, 130, 60), 0.8 + 0.1 * (angle % 3)))
    p.poly([(0.22, 0.6), (0.78, 0.6), (0.7, 1.0), (0.3, 1.0)], c)


# (name, draw, box width / height, height as a share of the frame, round (cylinder shading) or flat)
PRODUCTS: tuple[tuple[str, Callable[[Painter, tuple[int, int, int]], None], float, float, bool], ...] = (
    ("bottle", bottle, 0.36, 0.72, True),
    ("mug", mug, 1.1, 0.5, True),
    ("box", box, 1.3, 0.55, False),
    ("shoe", shoe, 2.1, 0.36, True),
    ("lamp", lamp, 0.6, 0.75, True),
    ("vase", vase, 0.5, 0.7, True),
    ("teapot", teapot, 1.35, 0.5, True),
    ("chair", chair, 0.72, 0.76, False),
    ("backpack", backpack, 0.75, 0.66, True),
    ("plant", plant, 0.85, 0.74, True),
)


def make_photo(index: int) -> tuple[str, bytes]:
    """A deterministic 12 MP studio product photo as JPEG bytes, and the product's name."""
    rng = np.random.default_rng(1000 + index)
    name, draw, aspect, share, rounded = PRODUCTS[index % len(PRODUCTS)]
    w, h = DRAW_SIZE
    ph = h * share * rng.uniform(0.9, 1.05)
    pw = ph * aspect
    cx, floor = w * (0.5 + rng.uniform(-0.08, 0.08)), h * rng.uniform(0.8, 0.9)
    painter = Painter(DRAW_SIZE, (cx - pw / 2, floor - ph, cx + pw / 2, floor))
    hue, sat, val = rng.uniform(), rng.uniform(0.3, 0.8), rng.uniform(0.35, 0.9)
    draw(painter, tuple(round(255 * x) for x in colorsys.hsv_to_rgb(hue, sat, val)))  # type: ignore[arg-type]

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = (np.array(c, np.float32) for c in BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    t = (ys / h)[..., None] ** 1.5
    vignette = 1 - 0.08 * (((xs - w / 2) / w) ** 2 + ((ys - h / 2) / h) ** 2)[..., None]
    background = (top + (bottom - top) * t) * vignette
    shadow = Image.new("L", DRAW_SIZE, 0)
    ImageDraw.Draw(shadow).ellipse((cx - pw * 0.55, floor - h * 0.025, cx + pw * 0.55, floor + h * 0.03), fill=110)
    shadow_a = np.asarray(shadow.filter(ImageFilter.GaussianBlur(h * 0.02)), np.float32)[..., None] / 255
    background *= 1 - shadow_a

    x0, _, x1, _ = painter.mask.getbbox() or (0, 0, w, h)
    across = np.clip((xs - x0) / max(1, x1 - x0), 0, 1)[..., None]
    if rounded:  # a cylinder lit from the front left, with a specular stripe
        light = 0.62 + 0.45 * np.clip(np.sin(np.pi * across), 0, 1) ** 0.7
    else:  # flat faces, a little darker towards the floor
        light = 1.0 - 0.15 * (ys / h)[..., None]
    specular = 110 * np.exp(-(((across - 0.3) / 0.035) ** 2)) if rounded else 0.0
    grain = Image.fromarray(rng.normal(128, 40, (h // 8, w // 8)).clip(0, 255).astype(np.uint8))
    grain = grain.resize(DRAW_SIZE, Image.Resampling.BICUBIC)
    texture = 1 + 0.12 * (np.asarray(grain, np.float32)[..., None] / 255 - 0.5)
    product = np.asarray(painter.albedo, np.float32) * light * texture + specular
    alpha = np.asarray(painter.mask, np.float32)[..., None] / 255
    small = Image.fromarray(np.clip(background * (1 - alpha) + product * alpha, 0, 255).astype(np.uint8))

    full = np.asarray(small.resize(PHOTO_SIZE, Image.Resampling.BICUBIC), np.float32)
    full += rng.standard_normal(full.shape, dtype=np.float32) * 4.0
    out = io.BytesIO()
    Image.fromarray(np.clip(full, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=JPEG_QUALITY)
    return name, out.getvalue()


def ours(src: Path, dst: Path, session: Any, options: CutoutOptions = OPTIONS) -> Image.Image:
    """Our path for one file; returns the untrimmed working-size mask."""
    cutout = remove_background(src.read_bytes(), session, options)
    dst.write_bytes(encode_cutout(cutout, "png"))
    return cutout.mask


def rembg_folder(src: Path, dst: Path, session: Any) -> None:
    """What `rembg p` does for one file."""
    dst.write_bytes(rembg.remove(src.read_bytes(), session=session, **REMBG_FOLDER_KWARGS))


def mask_iou(mask: Image.Image, rembg_png: Path) -> float:
    """IoU of our mask and rembg's alpha resized to it, both thresholded at 128."""
    with Image.open(rembg_png) as im:
        alpha = im.getchannel("A").resize(mask.size, Image.Resampling.BILINEAR)
    a, b = np.asarray(mask) >= 128, np.asarray(alpha) >= 128
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def make_inputs(images: int, folder: Path) -> list[Path]:
    started = time.perf_counter()
    sources = []
    for i in range(images):
        name, jpeg = make_photo(i)
        sources.append(folder / f"{i:02d}-{name}.jpg")
        sources[-1].write_bytes(jpeg)
    median_size = statistics.median(s.stat().st_size for s in sources)
    print(f"made {images} {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEGs (q{JPEG_QUALITY}) in "
          f"{time.perf_counter() - started:.1f}s, median {mb(median_size)}")
    return sources


def time_runs(
    methods: dict[str, Callable[[Path], None]], sources: list[Path], runs: int
) -> dict[str, list[list[float]]]:
    """Seconds per image, method -> run -> image, after one untimed warm-up image per method."""
    for method in methods.values():
        method(sources[0])
    times: dict[str, list[list[float]]] = {name: [] for name in methods}
    for r in range(runs):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))  # alternate who goes first
        for name in order:
            seconds = []
            for src in sources:
                started = time.perf_counter()
                methods[name](src)
                seconds.append(time.perf_counter() - started)
            times[name].append(seconds)
        print(f"run {r + 1}/{runs}: " + ", ".join(f"{m} {sum(times[m][-1]):.2f}s" for m in methods), flush=True)
    return times


def run(runs: int, images: int, out_dir: Path) -> None:
    dirs = {name: out_dir / name for name in ("inputs", "ours", "plain", "rembg")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    sources = make_inputs(images, dirs["inputs"])

    our_session, rembg_session = harness.cutout_sessions(MODEL)
    masks: dict[str, dict[Path, Image.Image]] = {"ours": {}, "plain": {}}  # from the last run, for the IoU

    def run_ours(src: Path) -> None:
        masks["ours"][src] = ours(src, dirs["ours"] / f"{src.stem}.png", our_session)

    def run_plain(src: Path) -> None:
        masks["plain"][src] = ours(src, dirs["plain"] / f"{src.stem}.png", our_session, PLAIN_OPTIONS)

    def run_rembg(src: Path) -> None:
        rembg_folder(src, dirs["rembg"] / f"{src.stem}.png", rembg_session)

    times = time_runs({"ours": run_ours, "plain": run_plain, "rembg": run_rembg}, sources, runs)

    all_ious = {m: [mask_iou(masks[m][src], dirs["rembg"] / f"{src.stem}.png") for src in sources] for m in masks}
    ious = all_ious["ours"]
    sizes = {m: [(dirs[m] / f"{s.stem}.png").stat().st_size for s in sources] for m in times}
    image_s = {m: [statistics.median(run[i] for run in times[m]) for i in range(images)] for m in times}
    per_s = {m: statistics.median(sum(run) for run in times[m]) / images for m in times}
    ratio = per_s["ours"] / per_s["rembg"]
    mean_iou, min_iou = statistics.fmean(ious), min(ious)
    plain_ratio = per_s["plain"] / per_s["rembg"]
    plain_mean_iou, plain_min_iou = statistics.fmean(all_ious["plain"]), min(all_ious["plain"])

    print()
    print(f"model {MODEL}, rembg {rembg.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; ours: max_side={OPTIONS.max_side}")
    print()
    print(f"{'image':<14}{'ours s':>9}{'rembg s':>9}{'ratio':>8}{'IoU':>8}{'ours PNG':>11}{'rembg PNG':>11}")
    for i, src in enumerate(sources):
        print(f"{src.stem:<14}{image_s['ours'][i]:>9.3f}{image_s['rembg'][i]:>9.3f}"
              f"{image_s['ours'][i] / image_s['rembg'][i]:>8.3f}{ious[i]:>8.4f}"
              f"{mb(sizes['ours'][i]):>11}{mb(sizes['rembg'][i]):>11}")
    print()
    print("per-run totals (s): " + "; ".join(f"{m} " + " ".join(f"{sum(run):.2f}" for run in times[m]) for m in times))
    run_ratios = [sum(a) / sum(b) for a, b in zip(times["ours"], times["rembg"], strict=True)]
    plain_ratios = [sum(a) / sum(b) for a, b in zip(times["plain"], times["rembg"], strict=True)]
    spread = max(run_ratios) / min(run_ratios)
    note = "  (runs disagree by more than 20%: was the machine busy?)" if spread > 1.2 else ""
    print("per-run ours/rembg: " + " ".join(f"{r:.3f}" for r in run_ratios) + note)
    print("per-run plain/rembg: " + " ".join(f"{r:.3f}" for r in plain_ratios))
    print()
    print(f"{'method':<8}{'median s/image':>16}{'ours/rembg':>12}{'mean IoU':>10}{'min IoU':>9}{'median PNG':>12}")
    print(f"{'ours':<8}{per_s['ours']:>16.3f}{ratio:>12.3f}{mean_iou:>10.4f}{min_iou:>9.4f}"
          f"{mb(statistics.median(sizes['ours'])):>12}")
    print(f"{'plain':<8}{per_s['plain']:>16.3f}{plain_ratio:>12.3f}{plain_mean_iou:>10.4f}{plain_min_iou:>9.4f}"
          f"{mb(statistics.median(sizes['plain'])):>12}")
    print(f"{'rembg':<8}{per_s['rembg']:>16.3f}{1:>12.3f}{'':>10}{'':>9}{mb(statistics.median(sizes['rembg'])):>12}")
    print()
    print(f"goal: ours <= {TIME_GOAL}x rembg time -> {harness.verdict(ratio <= TIME_GOAL)} ({ratio:.3f}x; "
          f"refinement adds {ratio - plain_ratio:+.3f}x over plain's {plain_ratio:.3f}x)")
    print(f"goal: plain IoU with rembg >= {IOU_GOAL} -> {harness.verdict(plain_min_iou >= IOU_GOAL)} "
          f"(every image; mean {plain_mean_iou:.4f}, min {plain_min_iou:.4f}; refined: mean {mean_iou:.4f}, "
          f"min {min_iou:.4f}, departing on purpose, see cutout_quality.py)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs over all images (default 5)")
    parser.add_argument("--images", type=int, default=10, help="how many photos to make (default 10)")
    parser.add_argument("--out-dir", type=Path, help="keep inputs and outputs here (default: a temp dir, removed)")
    args = parser.parse_args()
    if args.runs < 1 or args.images < 1:
        parser.error("--runs and --images must be at least 1")
    if args.out_dir:
        run(args.runs, args.images, args.out_dir)
        print(f"inputs and outputs kept in {args.out_dir}")
    else:
        with tempfile.TemporaryDirectory(prefix="cutout-bench-") as tmp:
            run(args.runs, args.images, Path(tmp))


if __name__ == "__main__":
    main()
