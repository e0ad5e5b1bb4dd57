"""Benchmark cutout quality against rembg on synthetic product photos whose true masks are known exactly.

Every photo is drawn by this script at 1600x1200 (shapes drawn at twice the size and averaged down, so the
true alpha has real anti-aliased edges), lit, textured, given a studio background, sensor noise and JPEG (q92).
Each method gets the same JPEG bytes and the same u2netp model (one session per method, made before timing):

* rembg:       `rembg.remove(data, session=...)`, its default path (the 320x320 mask stretched to the photo)
* rembg-am:    the same with `alpha_matting=True` (pymatting's closed-form matte on rembg's trimap)
* ours:        `remove_background(data, session, CutoutOptions(max_side=1600))` with edge refinement (the default)
* ours-plain:  the same with `refine=False`, to show what the refinement itself adds

Per method it reports, averaged over the photos:

* IoU:       of the alpha >= 0.5 region with the true mask
* bF:        boundary F-measure: the edges of both masks matched within 2 px (at 1600 px)
* band err:  mean |alpha - true alpha| within 6 px either side of the true edge (halo and lost edge alike)
* fringe:    mean colour error (0-255) in that band when the cutout and the truth are put on white
* s/image:   seconds from JPEG bytes to an encoded PNG, median of --runs

Side-by-side crops of the edges (photo | rembg | ours, on grey) go to benchmarks/out/cutout_quality/.

Run from the repository root (a few minutes, most of it rembg's alpha matting):

    .venv/bin/python benchmarks/cutout_quality.py [--runs 3] [--methods rembg,rembg-am,ours,ours-plain]

Always exits 0: the goal lines print PASS or FAIL.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import numpy as np
import rembg
from cutout import MODEL, Painter, backpack, bottle, box, chair, lamp, mug, shade, teapot, vase
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from catalog_service.imaging.cutout import CutoutOptions, encode_cutout, remove_background

OUT_DIR = Path(__file__).resolve().parent / "out" / "cutout_quality"
SIZE = (1600, 1200)
SUPERSAMPLE = 2
JPEG_QUALITY = 92
BOUNDARY_TOLERANCE_PX = 2
BAND_PX = 6
BF_GOAL = 0.95
BAND_GOAL = 0.4  # ours' band error as a share of rembg's default
CROP = 160  # side of an edge crop, in photo pixels
CROP_ZOOM = 2

Colour = tuple[int, int, int]


def stem(p: Painter, c: Colour) -> None:
    """A flower on a thin stem: a part only a few pixels wide that must survive."""
    p.ellipse((0.2, 0.0), (0.8, 0.28), c)
    p.ellipse((0.4, 0.1), (0.6, 0.18), shade(c, 0.6))
    p.line([(0.5, 0.26), (0.49, 0.6), (0.51, 0.92)], (70, 120, 60), 0.03)
    p.poly([(0.5, 0.55), (0.78, 0.42), (0.9, 0.46), (0.62, 0.58)], (70, 130, 60))
    p.rect((0.3, 0.9), (0.7, 1.0), (90, 90, 96), radius=0.05)


@dataclasses.dataclass(frozen=True)
class Scene:
    name: str
    draw: Callable[[Painter, Colour], None]
    colour: Colour
    background: tuple[Colour, Colour]  # top and bottom of the sweep
    aspect: float  # the product box's width / height
    share: float  # the product's height as a share of the photo's
    rounded: bool  # cylinder shading and a specular stripe, or flat faces
    shadow: float = 0.35  # darkness of the soft contact shadow (0 none, 1 black)
    specular: float = 60.0  # height of the specular stripe, in 8-bit levels


SCENES = (
    Scene("box-hard-edges", box, (40, 96, 170), ((236, 236, 234), (222, 222, 220)), 1.3, 0.55, False),
    Scene("mug-handle-hole", mug, (190, 70, 40), ((240, 231, 216), (222, 210, 192)), 1.1, 0.5, True),
    Scene("chair-thin-legs", chair, (60, 110, 90), ((228, 229, 232), (206, 208, 212)), 0.72, 0.76, False),
    Scene("flower-thin-stem", stem, (220, 180, 40), ((214, 227, 240), (190, 205, 222)), 0.5, 0.8, False),
    Scene("bottle-glossy", bottle, (30, 90, 60), ((246, 246, 244), (232, 232, 230)), 0.36, 0.72, True,
          specular=200.0),
    Scene("backpack-dark-on-dark", backpack, (34, 34, 38), ((62, 62, 66), (46, 46, 50)), 0.75, 0.66, True,
          shadow=0.25, specular=25.0),
    Scene("vase-white-on-white", vase, (250, 250, 248), ((244, 244, 242), (232, 232, 230)), 0.5, 0.7, True,
          shadow=0.2, specular=0.0),
    Scene("teapot-soft-shadow", teapot, (120, 150, 200), ((240, 240, 238), (226, 226, 224)), 1.35, 0.5, True,
          shadow=0.6),
    Scene("lamp-on-green", lamp, (230, 120, 30), ((40, 160, 70), (30, 130, 55)), 0.6, 0.75, True),
    Scene("mug-on-magenta", mug, (240, 240, 236), ((200, 40, 150), (170, 30, 125)), 1.1, 0.5, True),
)


@dataclasses.dataclass
class Photo:
    name: str
    jpeg: bytes
    alpha: np.ndarray  # float32 0..1, the product's true coverage
    colour: np.ndarray  # float32 HxWx3, the product's true colour (where alpha > 0)


def make_photo(index: int, scene: Scene) -> Photo:
    """One deterministic 1600x1200 JPEG of a scene, with the true alpha and the true product colour."""
    rng = np.random.default_rng(2000 + index)
    w, h = SIZE
    big = (w * SUPERSAMPLE, h * SUPERSAMPLE)
    ph = h * scene.share * SUPERSAMPLE
    pw = ph * scene.aspect
    cx, floor = big[0] * 0.5, big[1] * 0.88
    painter = Painter(big, (cx - pw / 2, floor - ph, cx + pw / 2, floor))
    scene.draw(painter, scene.colour)
    alpha = np.asarray(painter.mask.resize(SIZE, Image.Resampling.BOX), np.float32) / 255
    albedo = np.asarray(painter.albedo.resize(SIZE, Image.Resampling.BOX), np.float32)
    albedo = albedo / np.maximum(alpha, 1e-3)[..., None]  # the albedo was drawn on black: un-premultiply

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = (np.array(c, np.float32) for c in scene.background)
    background = top + (bottom - top) * (ys / h)[..., None] ** 1.5
    background *= 1 - 0.06 * (((xs - w / 2) / w) ** 2 + ((ys - h / 2) / h) ** 2)[..., None]
    cx, floor, pw = cx / SUPERSAMPLE, floor / SUPERSAMPLE, pw / SUPERSAMPLE
    shadow = Image.new("L", SIZE, 0)
    ImageDraw.Draw(shadow).ellipse((cx - pw * 0.55, floor - h * 0.02, cx + pw * 0.55, floor + h * 0.03),
                                   fill=round(255 * scene.shadow))
    background *= 1 - np.asarray(shadow.filter(ImageFilter.GaussianBlur(h * 0.015)), np.float32)[..., None] / 255

    x0, _, x1, _ = painter.mask.getbbox() or (0, 0, big[0], big[1])
    across = np.clip((xs - x0 / SUPERSAMPLE) / max(1, (x1 - x0) / SUPERSAMPLE), 0, 1)[..., None]
    if scene.rounded:
        light = 0.7 + 0.35 * np.clip(np.sin(np.pi * across), 0, 1) ** 0.7
        specular = scene.specular * np.exp(-(((across - 0.3) / 0.035) ** 2))
    else:
        light, specular = 1.0 - 0.12 * (ys / h)[..., None], 0.0
    grain = Image.fromarray(rng.normal(128, 40, (h // 6, w // 6)).clip(0, 255).astype(np.uint8))
    texture = 1 + 0.08 * (np.asarray(grain.resize(SIZE, Image.Resampling.BICUBIC), np.float32)[..., None] / 255 - 0.5)
    colour = np.clip(albedo * light * texture + specular, 0, 255)
    a = alpha[..., None]
    photo = background * (1 - a) + colour * a + rng.standard_normal(background.shape).astype(np.float32) * 3.0
    out = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=JPEG_QUALITY)
    return Photo(scene.name, out.getvalue(), alpha, colour.astype(np.float32))


@dataclasses.dataclass
class Scores:
    iou: float
    boundary_f: float
    band_error: float
    fringe: float


def edges(mask: np.ndarray) -> np.ndarray:
    """The pixels of a binary mask that touch the other side (4-neighbourhood)."""
    inner = ndimage.binary_erosion(mask, border_value=1)
    outer = ndimage.binary_dilation(mask)
    return (mask & ~inner) | (outer & ~mask)


def score(photo: Photo, rgba: np.ndarray) -> Scores:
    """How close one cutout (HxWx4 uint8, photo-sized) is to the truth."""
    alpha = rgba[..., 3].astype(np.float32) / 255
    truth, pred = photo.alpha >= 0.5, alpha >= 0.5
    iou = float((truth & pred).sum() / max(1, (truth | pred).sum()))
    true_edge, pred_edge = edges(truth), edges(pred)
    to_true, to_pred = ndimage.distance_transform_edt(~true_edge), ndimage.distance_transform_edt(~pred_edge)
    precision = float((to_true[pred_edge] <= BOUNDARY_TOLERANCE_PX).mean()) if pred_edge.any() else 0.0
    recall = float((to_pred[true_edge] <= BOUNDARY_TOLERANCE_PX).mean())
    boundary_f = 2 * precision * recall / max(1e-9, precision + recall)
    band = to_true <= BAND_PX
    band_error = float(np.abs(alpha - photo.alpha)[band].mean())
    # On white, exactly as a marketplace page shows it.
    ours_on_white = rgba[..., :3] * alpha[..., None] + 255 * (1 - alpha[..., None])
    true_on_white = photo.colour * photo.alpha[..., None] + 255 * (1 - photo.alpha[..., None])
    fringe = float(np.abs(ours_on_white - true_on_white)[band].mean())
    return Scores(iou, boundary_f, band_error, fringe)


def edge_crop_box(photo: Photo, alphas: list[np.ndarray]) -> tuple[int, int, int, int]:
    """A crop around the true edge where the first method (rembg) is furthest from the truth."""
    error = ndimage.uniform_filter(np.abs(alphas[0] - photo.alpha), CROP // 2)
    error[edges(photo.alpha >= 0.5) == 0] = 0
    y, x = np.unravel_index(int(np.argmax(error)), error.shape)
    h, w = photo.alpha.shape
    left, top = min(max(0, x - CROP // 2), w - CROP), min(max(0, y - CROP // 2), h - CROP)
    return left, top, left + CROP, top + CROP


def write_crops(photo: Photo, outputs: dict[str, np.ndarray], path: Path) -> None:
    """photo | rembg | ours, each on mid grey, zoomed so that the edge pixels can be seen."""
    names = [m for m in ("rembg", "ours") if m in outputs]
    crop = edge_crop_box(photo, [outputs[m][..., 3].astype(np.float32) / 255 for m in names])
    tiles = [Image.open(io.BytesIO(photo.jpeg)).convert("RGB").crop(crop)]
    for name in names:
        cut = Image.fromarray(outputs[name]).crop(crop)
        grey = Image.new("RGB", cut.size, (128, 128, 128))
        grey.paste(cut, mask=cut.getchannel("A"))
        tiles.append(grey)
    side, gap = CROP * CROP_ZOOM, 6
    sheet = Image.new("RGB", (len(tiles) * side + (len(tiles) - 1) * gap, side + 22), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (tile, label) in enumerate(zip(tiles, ["photo", *names], strict=True)):
        sheet.paste(tile.resize((side, side), Image.Resampling.NEAREST), (i * (side + gap), 22))
        draw.text((i * (side + gap) + 4, 5), f"{label}  ({photo.name})", fill=(0, 0, 0))
    sheet.save(path)


def run(runs: int, methods: list[str], scene_names: list[str] | None) -> None:
    scenes = [s for s in SCENES if scene_names is None or s.name in scene_names]
    photos = [make_photo(i, s) for i, s in enumerate(scenes)]
    our_session, rembg_session = harness.cutout_sessions(MODEL)

    def ours(data: bytes, refine: bool = True) -> tuple[bytes, Any]:
        options = CutoutOptions(max_side=max(SIZE), padding=0.0, refine=refine)
        cutout = remove_background(data, our_session, options)
        return encode_cutout(cutout, "png"), cutout

    def untrimmed(cutout: Any) -> np.ndarray:
        # The encoded cutout is trimmed; put it back where it was in the photo to compare pixel for pixel.
        canvas = Image.new("RGBA", SIZE, (0, 0, 0, 0))
        canvas.paste(cutout.product, cutout.box[:2])
        return np.asarray(canvas)

    def rembg_default(data: bytes) -> tuple[bytes, None]:
        return rembg.remove(data, session=rembg_session), None

    def rembg_matting(data: bytes) -> tuple[bytes, None]:
        return rembg.remove(data, session=rembg_session, alpha_matting=True), None

    available: dict[str, Callable[[bytes], tuple[bytes, Any]]] = {
        "rembg": rembg_default, "rembg-am": rembg_matting, "ours": ours,
        "ours-plain": lambda data: ours(data, refine=False),
    }
    unknown = set(methods) - set(available)
    if unknown:
        raise SystemExit(f"unknown methods: {', '.join(sorted(unknown))}")

    for name in methods:  # warm-up: sessions, numba's JIT for pymatting, caches
        available[name](photos[0].jpeg)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    table: dict[str, list[Scores]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    print(f"{'photo':<24}" + "".join(f"{m + ' bF':>16}{m + ' band':>16}" for m in methods))
    for photo in photos:
        outputs: dict[str, np.ndarray] = {}
        for name in methods:
            times, (png, cutout) = harness.timed(functools.partial(available[name], photo.jpeg), runs)
            seconds[name].append(statistics.median(times))
            if cutout is not None:
                outputs[name] = untrimmed(cutout)
            else:
                with Image.open(io.BytesIO(png)) as im:
                    outputs[name] = np.asarray(im.convert("RGBA"))
            table[name].append(score(photo, outputs[name]))
        print(f"{photo.name:<24}" + "".join(f"{table[m][-1].boundary_f:>16.3f}{table[m][-1].band_error:>16.4f}"
                                             for m in methods), flush=True)
        write_crops(photo, outputs, OUT_DIR / f"{photo.name}.png")

    print()
    print(f"model {MODEL}, rembg {rembg.__version__}, {len(photos)} photos at {SIZE[0]}x{SIZE[1]}, "
          f"{os.cpu_count()} CPUs, median of {runs} run(s)")
    print()
    print(f"{'method':<12}{'IoU':>8}{'min IoU':>9}{'bF':>8}{'min bF':>8}{'band err':>10}{'fringe':>8}{'s/image':>9}")
    for name in methods:
        s = table[name]
        print(f"{name:<12}{statistics.fmean(x.iou for x in s):>8.4f}{min(x.iou for x in s):>9.4f}"
              f"{statistics.fmean(x.boundary_f for x in s):>8.3f}{min(x.boundary_f for x in s):>8.3f}"
              f"{statistics.fmean(x.band_error for x in s):>10.4f}{statistics.fmean(x.fringe for x in s):>8.2f}"
              f"{statistics.median(seconds[name]):>9.3f}")
    print()
    if "ours" in methods:
        mean_bf = statistics.fmean(x.boundary_f for x in table["ours"])
        print(f"goal: ours boundary F >= {BF_GOAL} -> {harness.verdict(mean_bf >= BF_GOAL)} ({mean_bf:.3f})")
    if "ours" in methods and "rembg" in methods:
        ratio = statistics.fmean(x.band_error for x in table["ours"]) / statistics.fmean(
            x.band_error for x in table["rembg"])
        print(f"goal: ours band error <= {BAND_GOAL}x rembg's -> {harness.verdict(ratio <= BAND_GOAL)} "
              f"({ratio:.3f}x)")
    print(f"edge crops (photo | rembg | ours, on grey): {OUT_DIR}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per photo and method (default 3)")
    parser.add_argument("--methods", default="rembg,rembg-am,ours,ours-plain",
                        help="comma-separated: rembg, rembg-am, ours, ours-plain")
    parser.add_argument("--scenes", default=None, help="comma-separated scene names (default: all)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    run(args.runs, args.methods.split(","), args.scenes.split(",") if args.scenes else None)


if __name__ == "__main__":
    main()
