"""The offline scene provider: scenes drawn locally by imaging/compose.py. No network, no keys, no cost.

Deterministic: the seed comes from the cutout bytes and the preset name, so the same request gives the same
JPEG bytes on every run (re-renders overwrite instead of drifting).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from PIL import Image, ImageColor

from catalog_service.imaging import compose
from catalog_service.imaging.encode import CONTENT_TYPES, encode
from catalog_service.imaging.errors import ImageRejected
from catalog_service.imaging.load import load_image
from catalog_service.scenes import DEFAULT_LONG_SIDE, DEFAULT_RATIO, MAX_LONG_SIDE, dimensions
from catalog_service.scenes.base import NotSupported, ScenePreset, SceneRefused, SceneRequest, SceneResult

MODEL = "compositor-v1"
JPEG_QUALITY = 90
MIN_SIDE = 64
"""Smallest scene width or height, in px, we draw."""
MAX_SIDE = MAX_LONG_SIDE
"""Largest scene width or height, in px, we draw."""
REFERENCE_DECODE_FACTOR = 2
"""References are decoded at most this many times the scene's longest side (enough to cover-crop a panorama)."""

_DRAWN: tuple[ScenePreset, ...] = (
    ScenePreset(
        name="studio",
        style="studio",
        prompt="The product standing on a seamless light grey studio sweep, soft even light, "
        "a gentle contact shadow under it, nothing else in the frame.",
    ),
    ScenePreset(
        name="marble-counter",
        style="surface",
        surface="marble",
        prompt="The product standing on a polished white marble counter with soft grey veins, "
        "a plain light wall behind, a faint reflection in the stone, calm daylight.",
    ),
    ScenePreset(
        name="wooden-table",
        style="surface",
        surface="wood",
        prompt="The product standing on a warm oiled oak table, a plain cream wall behind, "
        "soft window light and a natural contact shadow.",
    ),
    ScenePreset(
        name="brand-gradient",
        style="gradient",
        prompt="The product centred on a smooth radial gradient in the brand colour, "
        "lighter behind the product and darker at the edges, with a soft drop shadow.",
    ),
    ScenePreset(
        name="reference",
        style="reference",
        prompt="The product placed naturally into the setting of the reference photo, standing on a surface "
        "in the lower part of the frame, lit like the scene, with a soft contact shadow.",
    ),
)
_SQUARE = dimensions(DEFAULT_RATIO, DEFAULT_LONG_SIDE)
BUILTIN_PRESETS: tuple[ScenePreset, ...] = tuple(
    dataclasses.replace(preset, width=_SQUARE[0], height=_SQUARE[1]) for preset in _DRAWN
)
"""The scenes the compositor draws, at the default shop's size; builtin_presets() sizes them for each shop's ratio."""

# Each style is a small adapter onto one compose function. `reference` decodes the chosen reference photo
# only when the style needs it.
_Reference = Callable[[], Image.Image]
_Renderer = Callable[[Image.Image, ScenePreset, compose.Size, int, _Reference], Image.Image]


def _studio(
    cutout: Image.Image, preset: ScenePreset, size: compose.Size, seed: int, reference: _Reference
) -> Image.Image:
    return compose.studio(cutout, size)


def _surface(
    cutout: Image.Image, preset: ScenePreset, size: compose.Size, seed: int, reference: _Reference
) -> Image.Image:
    return compose.surface(cutout, size, material=preset.surface, seed=seed)


def _gradient(
    cutout: Image.Image, preset: ScenePreset, size: compose.Size, seed: int, reference: _Reference
) -> Image.Image:
    return compose.gradient(cutout, size, color=preset.brand_color)


def _reference(
    cutout: Image.Image, preset: ScenePreset, size: compose.Size, seed: int, reference: _Reference
) -> Image.Image:
    return compose.reference_scene(cutout, reference(), size)


_RENDERERS: dict[str, _Renderer] = {
    "studio": _studio,
    "surface": _surface,
    "gradient": _gradient,
    "reference": _reference,
}
STYLES = tuple(_RENDERERS)


def scene_seed(cutout_png: bytes, preset_name: str) -> int:
    """A 63-bit seed from the cutout bytes and the preset name: same inputs, same scene."""
    digest = hashlib.sha256(preset_name.encode("utf-8") + b"\0" + cutout_png).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class CompositorProvider:
    """Draws scenes locally at exactly the preset's width x height: studio sweep, brand gradient, the merchant's
    backdrop photo, or a marble or wood tabletop."""

    name = "compositor"

    def estimate_cost(self, request: SceneRequest) -> float:
        """Drawing a scene here costs nothing."""
        return 0.0

    def generate(self, request: SceneRequest) -> SceneResult:
        """One JPEG scene for the request, or SceneRefused saying what to change."""
        preset = request.preset
        size = _check_preset(preset)
        if preset.style == "reference" and not request.references:
            raise SceneRefused(
                f"Preset {preset.name!r} places the product into a reference photo, but the shop has none: "
                "add a reference image in settings, or pick another preset.",
                reason="no_reference",
            )
        seed = scene_seed(request.cutout_png, preset.name)
        cutout = _decode(request.cutout_png, what="cutout", max_side=max(size))

        def reference() -> Image.Image:
            # Several references: the seed picks one, so a catalogue spreads over them and a re-run keeps its pick.
            chosen = request.references[seed % len(request.references)]
            return _decode(chosen, what="reference image", max_side=REFERENCE_DECODE_FACTOR * max(size))

        try:
            image = _RENDERERS[preset.style](cutout, preset, size, seed, reference)
        except compose.EmptyCutout as exc:
            raise SceneRefused(
                "The cutout is fully transparent, so there is no product to place: "
                "check the source photo or the background removal.",
                reason="empty_cutout",
            ) from exc
        return SceneResult(
            data=encode(image, "jpeg", quality=JPEG_QUALITY),
            content_type=CONTENT_TYPES["jpeg"],
            width=image.width,
            height=image.height,
            preset=preset.name,
            provider=self.name,
            model=MODEL,
            cost_usd=0.0,
            # Where the style put the product, so the fidelity check measures this scene like any other. No
            # generative model drew any of it: source_type stays "".
            placement=compose.product_box(cutout, size, preset.style),
            image=image,
        )

    def refine(
        self, *, image_png: bytes, instruction: str, mask_png: bytes | None = None, size: str = "auto",
        quality: str = "medium", model: str | None = None, shop_key: str = "", preset: str = "refine",
    ) -> SceneResult:
        """Drawing cannot follow a free-text instruction: refused, naming the provider that can."""
        raise NotSupported("Refining a scene needs the OpenAI provider; choose it in settings.")


def _check_preset(preset: ScenePreset) -> compose.Size:
    """The preset's (width, height), or SceneRefused naming what the compositor cannot draw."""
    if preset.style not in _RENDERERS:
        raise SceneRefused(
            f"Preset {preset.name!r} has style {preset.style!r}; the offline compositor draws {', '.join(STYLES)}.",
            reason="unknown_style",
        )
    if preset.style == "surface" and preset.surface not in compose.MATERIALS:
        raise SceneRefused(
            f"Preset {preset.name!r} asks for a {preset.surface!r} surface; choose {' or '.join(compose.MATERIALS)}.",
            reason="invalid_preset",
        )
    if preset.style == "gradient":
        try:
            ImageColor.getrgb(preset.brand_color)
        except ValueError as exc:
            raise SceneRefused(
                f"Preset {preset.name!r} has brand colour {preset.brand_color!r}; use a colour like #3b6ea5.",
                reason="invalid_preset",
            ) from exc
    for side in (preset.width, preset.height):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise SceneRefused(
                f"Preset {preset.name!r} is {preset.width}x{preset.height}; "
                f"each side must be {MIN_SIDE}-{MAX_SIDE} px.",
                reason="invalid_preset",
            )
    return preset.width, preset.height


def _decode(data: bytes, *, what: str, max_side: int) -> Image.Image:
    """Decoded image via imaging/load.py; an image it rejects becomes SceneRefused with its reason."""
    try:
        return load_image(data, max_side=max_side)
    except ImageRejected as exc:
        raise SceneRefused(f"The {what} cannot be used: {exc}", reason="bad_image") from exc
