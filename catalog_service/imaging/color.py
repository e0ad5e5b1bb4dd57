"""Colour management: photos tagged with an ICC profile (Display P3, Adobe RGB, CMYK) brought to sRGB.

Everything we make is sRGB: untagged images on the web are shown as sRGB, so a P3 phone photo whose
numbers were used as they are would come out dull, and a CMYK product shot would come out wrong.
The conversion is LittleCMS through Pillow's ImageCms (pillow.readthedocs.io, "ImageCms module").
"""

from __future__ import annotations

import dataclasses
import functools
import io

import numpy as np
from PIL import Image, ImageCms

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))

SRGB_PROFILE: bytes = _SRGB.tobytes()
"""The sRGB ICC profile (LittleCMS's built-in one) that every image we write is tagged with."""

# Relative colorimetric is what a matrix/TRC profile (P3, Adobe RGB) offers anyway: colours inside sRGB stay
# exactly themselves and only the ones outside it are clipped. Black point compensation matters for CMYK, whose
# black is not zero. NOCACHE: LittleCMS's one-pixel cache is written by every call, and scenes run in threads.
_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION | ImageCms.Flags.NOCACHE

# Profile colour space (ICC header) -> the image modes we convert from, and what each becomes.
_MODES = {
    "RGB": {"RGB": "RGB", "RGBA": "RGBA"},
    "GRAY": {"L": "RGB", "LA": "RGBA"},
    "CMYK": {"CMYK": "RGB"},
}
# Modes Pillow turns into RGB(A) without losing anything, for an RGB profile attached to a palette or grey image.
_TO_RGB = {"P", "PA", "L", "LA", "1"}
_TRANSFORM_CACHE_SIZE = 32
# The grid an RGB transform is tried on to see whether it changes anything (an "sRGB IEC61966-2.1" tag).
_PROBE_STEP = 15


@dataclasses.dataclass(frozen=True)
class _Conversion:
    transform: ImageCms.ImageCmsTransform
    in_mode: str
    out_mode: str


def to_srgb(image: Image.Image, *, in_place: bool = False) -> Image.Image:
    """The image in sRGB, RGBA keeping its alpha; an untagged image is taken as sRGB and returned as it is.

    The profile is `image.info["icc_profile"]`; it is dropped from the result, which is sRGB like every untagged
    image. A profile that is damaged or does not fit the pixels (a CMYK profile on an RGB image) is ignored, as
    browsers ignore it. `in_place` lets an RGB or RGBA image be converted without a copy; the caller's image
    then changes.
    """
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    conversion = _conversion(bytes(icc), image.mode, "transparency" in image.info)
    if conversion is None:
        return image
    if image.mode != conversion.in_mode:
        # A palette or grey image with an RGB profile: Pillow's own conversion first (keeps transparency), then ours.
        image, in_place = image.convert(conversion.in_mode), True
    if in_place and conversion.in_mode == conversion.out_mode:
        conversion.transform.apply_in_place(image)
        converted = image
    elif conversion.in_mode == "LA":
        # Pillow keeps LA four bytes a pixel, not the two LittleCMS reads: the grey goes alone, the alpha after.
        converted = conversion.transform.apply(image.getchannel("L"))
        converted.putalpha(image.getchannel("A"))
    else:
        converted = conversion.transform.apply(image)  # LittleCMS carries RGBA's alpha over as it is
    converted.info.pop("icc_profile", None)
    return converted


@functools.lru_cache(maxsize=_TRANSFORM_CACHE_SIZE)
def _conversion(icc: bytes, mode: str, colour_key: bool) -> _Conversion | None:
    """The transform from this profile to sRGB for pixels in `mode`, built once; None when nothing is to be done."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError):  # a damaged profile: treat the image as untagged
        return None
    space = profile.profile.xcolor_space.strip()
    modes = _MODES.get(space)
    if modes is None:
        return None  # Lab, XYZ, multi-ink: not something a product photo carries
    in_mode = mode
    if space == "RGB" and (mode in _TO_RGB or colour_key):
        # Colour-keyed transparency (PNG tRNS) lives in info, which the transform does not carry: go RGBA first.
        in_mode = "RGBA" if (colour_key or mode in ("PA", "LA")) else "RGB"
    elif space == "GRAY" and colour_key:
        return None  # a grey PNG with a colour key: rare, and the key must survive, so leave it to Pillow
    out_mode = modes.get(in_mode)
    if out_mode is None:
        return None
    try:
        grey_and_alpha = in_mode == "LA"
        transform = ImageCms.buildTransform(profile, _SRGB, "L" if grey_and_alpha else in_mode,
                                            "RGB" if grey_and_alpha else out_mode, _INTENT, _FLAGS)
    except ImageCms.PyCMSError:
        return None
    if in_mode == out_mode and _is_identity(transform, in_mode):
        return None  # an sRGB-tagged photo, the common case: converting would only cost time
    return _Conversion(transform, in_mode, out_mode)


def _is_identity(transform: ImageCms.ImageCmsTransform, mode: str) -> bool:
    """Whether the transform leaves every colour of a grid across the cube within one step of itself."""
    steps = np.arange(0, 256, _PROBE_STEP, dtype=np.uint8)
    cube = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(1, -1, 3)
    probe = Image.fromarray(cube).convert(mode)
    before = np.asarray(probe, dtype=np.int16)
    after = np.asarray(transform.apply(probe), dtype=np.int16)
    return bool(np.abs(after - before).max() <= 1)
