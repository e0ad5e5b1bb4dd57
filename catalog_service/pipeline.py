"""The render core: source photo bytes in, encoded assets out. No database, no queue, no Flask.

jobs/render.py loads the rows, calls make_assets(), and saves what comes back.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from .imaging.cutout import WHITE_JPEG_QUALITY, CutoutOptions, encode_cutout, remove_background, white_variant
from .imaging.encode import CONTENT_TYPES, EXTENSIONS, encode
from .scenes.base import ProductInfo, ProviderError, SceneProvider, ScenePreset, SceneRequest


@dataclasses.dataclass(frozen=True)
class MadeAsset:
    kind: str  # cutout | white | scene
    preset: str
    data: bytes
    content_type: str
    ext: str
    width: int
    height: int
    cost_usd: float = 0.0
    model: str = ""
    usage: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PipelineResult:
    assets: list[MadeAsset]
    errors: list[dict[str, str]]  # one per scene that could not be made
    timings_ms: dict[str, int]


@dataclasses.dataclass(frozen=True)
class RenderPlan:
    """What one render makes, taken from the shop's settings and the render's options."""

    cutout: CutoutOptions = CutoutOptions()
    cutout_format: str = "png"
    white: bool = True
    presets: Sequence[ScenePreset] = ()
    references: Sequence[bytes] = ()
    product: ProductInfo = ProductInfo()
    shop_key: str = ""
    max_pixels: int = 50_000_000


def make_assets(source: bytes, plan: RenderPlan, *, session: Any, provider: SceneProvider) -> PipelineResult:
    """Cutout, white variant and scenes for one source photo.

    A bad photo raises ImageRejected (nothing can be made). A scene that fails permanently is
    recorded in `errors` while the others still ship; a transient provider failure is raised so
    the job can be retried.
    """
    timings: dict[str, int] = {}
    started = time.perf_counter()
    cutout = remove_background(source, session, plan.cutout, max_pixels=plan.max_pixels)
    cutout_png = encode_cutout(cutout, "png")
    timings["cutout"] = _ms_since(started)

    assets: list[MadeAsset] = []
    cutout_bytes = cutout_png if plan.cutout_format == "png" else encode_cutout(cutout, plan.cutout_format)
    assets.append(_asset("cutout", "", cutout_bytes, plan.cutout_format, cutout.image.size))
    if plan.white:
        started = time.perf_counter()
        white = white_variant(cutout.product, plan.cutout)
        assets.append(_asset("white", "", encode(white, "jpeg", quality=WHITE_JPEG_QUALITY), "jpeg", white.size))
        timings["white"] = _ms_since(started)

    errors: list[dict[str, str]] = []
    for preset in plan.presets:
        if preset.style == "reference" and not plan.references:
            continue  # a reference scene needs the merchant's reference photos; without them it is not asked for
        request = SceneRequest(
            cutout_png=cutout_png, preset=preset, product=plan.product,
            references=tuple(plan.references), shop_key=plan.shop_key,
        )
        started = time.perf_counter()
        try:
            scene = provider.generate(request)
        except ProviderError as exc:
            if exc.retryable:
                raise
            errors.append({"preset": preset.name, "reason": exc.reason, "message": str(exc)})
            continue
        assets.append(
            MadeAsset(
                kind="scene", preset=preset.name, data=scene.data, content_type=scene.content_type,
                ext=_ext_for(scene.content_type), width=scene.width, height=scene.height,
                cost_usd=scene.cost_usd, model=scene.model, usage=dict(scene.usage),
            )
        )
        timings[f"scene:{preset.name}"] = _ms_since(started)
    return PipelineResult(assets=assets, errors=errors, timings_ms=timings)


def _asset(kind: str, preset: str, data: bytes, fmt: str, size: tuple[int, int]) -> MadeAsset:
    return MadeAsset(kind=kind, preset=preset, data=data, content_type=CONTENT_TYPES[fmt], ext=EXTENSIONS[fmt],
                     width=size[0], height=size[1])


def _ext_for(content_type: str) -> str:
    for fmt, known in CONTENT_TYPES.items():
        if known == content_type:
            return EXTENSIONS[fmt]
    raise ValueError(f"a scene provider returned {content_type!r}, which we do not store")


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
