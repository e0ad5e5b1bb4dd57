"""imaging/color.py and the loader: a phone's Display P3, Adobe RGB or CMYK photo keeps its colours in sRGB.

The expected colours are worked out here with numpy from the colour spaces' published primaries (P3 -> XYZ ->
sRGB matrices and the sRGB curve), independently of LittleCMS, and compared with the loader's output as a
CIE76 colour difference (Euclidean distance in CIELAB, D65).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog_service.imaging import color
from catalog_service.imaging.color import SRGB_PROFILE, to_srgb
from catalog_service.imaging.encode import encode
from catalog_service.imaging.load import load_image

ADOBE_RGB_ICC = Path("/usr/share/color/icc/colord/AdobeRGB1998.icc")
SRGB_ICC = Path("/usr/share/color/icc/colord/sRGB.icc")

D65 = np.array([0.95047, 1.0, 1.08883])
D50 = np.array([0.9642, 1.0, 0.8249])
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE_PRIMARIES = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
ADOBE_GAMMA = 563 / 256  # Adobe RGB (1998) Color Image Encoding, section 4.3.1.2

# Patches in the source space: saturated product colours, a skin tone, neutrals, and P3's own red (outside sRGB).
PATCHES = [(200, 40, 40), (40, 160, 60), (30, 90, 200), (224, 172, 140), (128, 128, 128), (250, 250, 250),
           (255, 0, 0), (90, 200, 220)]
PATCH = 64
MAX_DELTA_E = 2.0


# ---- independent colour science (numpy) ----


def rgb_to_xyz_matrix(primaries, white) -> np.ndarray:
    """Linear RGB -> XYZ for these chromaticities and white (the standard derivation, e.g. SMPTE RP 177)."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    return xyz * np.linalg.solve(xyz, white)


def bradford(source_white, target_white) -> np.ndarray:
    """Chromatic adaptation between two whites (Bradford), as ICC profiles do to reach their D50 PCS."""
    cone = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    return np.linalg.inv(cone) @ np.diag((cone @ target_white) / (cone @ source_white)) @ cone


def srgb_decode(values) -> np.ndarray:
    v = np.asarray(values, dtype=float) / 255
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear) -> np.ndarray:
    v = np.clip(linear, 0, 1)
    return 255 * np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def to_srgb_reference(values, primaries, decode) -> np.ndarray:
    """Source RGB values (0-255) -> sRGB values (0-255, clipped to the sRGB gamut), through XYZ at D65."""
    xyz = rgb_to_xyz_matrix(primaries, D65) @ decode(values).T
    return srgb_encode((np.linalg.inv(rgb_to_xyz_matrix(SRGB_PRIMARIES, D65)) @ xyz).T)


def lab(srgb, white=D65) -> np.ndarray:
    """CIELAB of sRGB values (0-255)."""
    xyz = (rgb_to_xyz_matrix(SRGB_PRIMARIES, D65) @ srgb_decode(srgb).T).T
    if white is D50:
        xyz = (bradford(D65, D50) @ xyz.T).T
    t = xyz / white
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e76(a, b) -> np.ndarray:
    """CIE76 colour difference of two arrays of sRGB values."""
    return np.linalg.norm(lab(a) - lab(b), axis=-1)


# ---- ICC profiles written here, byte by byte (ICC.1:2022) ----


def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def xyz_tag(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(s15(v) for v in xyz)


def icc_profile(device_class: bytes, space: bytes, pcs: bytes, version: int, tags: dict[bytes, bytes]) -> bytes:
    """A whole ICC profile: the 128-byte header, the tag table, then each tag's data on a 4-byte boundary."""
    table_size = 4 + 12 * len(tags)
    offset, entries, body = 128 + table_size, b"", b""
    for signature, data in tags.items():
        data += b"\0" * (-len(data) % 4)
        entries += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = 128 + table_size + len(body)
    header = (struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", version) + device_class + space + pcs
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(s15(v) for v in D50) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + entries + body


def description(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(encoded), 28) + encoded


def display_p3_profile() -> bytes:
    """Display P3 as phones tag it: a v4 matrix/TRC profile, P3 primaries at D65 adapted to D50, the sRGB curve."""
    adapt = bradford(D65, D50)
    colorants = adapt @ rgb_to_xyz_matrix(P3_PRIMARIES, D65)
    # parametricCurveType, function 3: the sRGB curve (IEC 61966-2-1).
    curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    return icc_profile(b"mntr", b"RGB ", b"XYZ ", 0x04300000, {
        b"desc": description("Display P3 (test)"),
        b"wtpt": xyz_tag(D50),
        b"chad": b"sf32\0\0\0\0" + b"".join(s15(v) for v in adapt.flatten()),
        b"rXYZ": xyz_tag(colorants[:, 0]), b"gXYZ": xyz_tag(colorants[:, 1]), b"bXYZ": xyz_tag(colorants[:, 2]),
        b"rTRC": curve, b"gTRC": curve, b"bTRC": curve,
    })


def grey_profile(gamma: float = 2.2) -> bytes:
    """A grey (monochrome) profile as scanners and some cameras write it: a white point and one gamma curve."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))  # u8Fixed8 gamma
    return icc_profile(b"mntr", b"GRAY", b"XYZ ", 0x02100000, {b"wtpt": xyz_tag(D50), b"kTRC": curve})


# Process inks as sRGB colours: a CMYK profile that maps them there is unlike Pillow's profile-free conversion,
# which makes pure cyan (0, 255, 255).
INKS = {"c": (0, 158, 224), "m": (226, 0, 122), "y": (255, 237, 0)}


def ink_srgb(c: int, m: int, y: int, k: int) -> np.ndarray:
    """The sRGB colour of a corner of the CMYK cube: inks multiply, black takes everything."""
    rgb = np.full(3, 255.0)
    for on, ink in ((c, INKS["c"]), (m, INKS["m"]), (y, INKS["y"])):
        if on:
            rgb = rgb * np.array(ink) / 255
    return rgb * (1 - k)


def cmyk_profile() -> bytes:
    """A CMYK input profile: an A2B0 lut16 whose 2x2x2x2 grid maps each corner of the CMYK cube to CIELAB (D50)."""
    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]  # C varies slowest
    clut = b""
    for corner in corners:
        lightness, a, b = lab(ink_srgb(*corner), white=D50)
        # lut16Type carries Lab in the ICC v2 encoding: L 0..100 -> 0..0xFF00, a and b +128, times 256.
        clut += struct.pack(">3H", round(lightness * 0xFF00 / 100), round((a + 128) * 256), round((b + 128) * 256))
    identity_matrix = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    linear = struct.pack(">2H", 0, 0xFFFF)
    lut = (b"mft2\0\0\0\0" + struct.pack(">BBBB", 4, 3, 2, 0) + identity_matrix + struct.pack(">HH", 2, 2)
           + linear * 4 + clut + linear * 3)
    desc = b"desc\0\0\0\0" + struct.pack(">I", 10) + b"Test CMYK\0" + b"\0" * 12 + b"\0" * 67
    return icc_profile(b"scnr", b"CMYK", b"Lab ", 0x02100000, {b"desc": desc, b"wtpt": xyz_tag(D50), b"A2B0": lut})


# ---- test photos ----


def patch_photo(patches, mode: str = "RGB", patch: int = PATCH) -> Image.Image:
    """One row of flat patches, each `patch` px square."""
    im = Image.new(mode, (patch * len(patches), patch))
    for i, value in enumerate(patches):
        im.paste(tuple(value), (i * patch, 0, (i + 1) * patch, patch))
    return im


def saved(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def patch_means(im: Image.Image, count: int) -> np.ndarray:
    """Mean colour of each patch's middle half (away from the codec's edges), as floats."""
    pixels = np.asarray(im.convert("RGB"), dtype=float)
    size = im.width // count
    quarter = size // 4
    return np.array([pixels[quarter:-quarter or None, i * size + quarter:(i + 1) * size - quarter].reshape(-1, 3)
                     .mean(axis=0) for i in range(count)])


def exiftool_json(data: bytes, tmp_path: Path, suffix: str, *tags: str) -> dict:
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is not installed; scripts/ensure-tools installs it")
    path = tmp_path / f"image.{suffix}"
    path.write_bytes(data)
    out = subprocess.run(["exiftool", "-j", *tags, str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]


# ---- Display P3 ----


@pytest.mark.parametrize(("max_side", "draft_slack"), [(None, 0.0), (256, 0.3)])
def test_a_display_p3_phone_photo_keeps_its_colours_in_srgb(max_side, draft_slack):
    """A P3 JPEG through the real loader (whole, and drafted to half size) matches the independent conversion."""
    data = saved(patch_photo(PATCHES, patch=2 * PATCH), "JPEG", quality=95, subsampling=0,
                 icc_profile=display_p3_profile())

    loaded = load_image(data, max_side=max_side, draft_slack=draft_slack)

    assert loaded.mode == "RGB" and "icc_profile" not in loaded.info
    if max_side:
        assert loaded.width == 256
    expected = to_srgb_reference(PATCHES, P3_PRIMARIES, srgb_decode)
    differences = delta_e76(patch_means(loaded, len(PATCHES)), expected)
    assert differences.max() < MAX_DELTA_E, differences.round(2)
    # The same numbers read as sRGB (the profile ignored) are visibly off: the test can tell.
    assert delta_e76(np.array(PATCHES, dtype=float), expected).max() > 5


def test_a_p3_png_with_alpha_keeps_its_alpha_exactly():
    """RGBA converts its colour and leaves every alpha value as it was (the cutout depends on it)."""
    im = patch_photo(PATCHES[:4], "RGBA")
    alpha = Image.linear_gradient("L").resize(im.size)
    im.putalpha(alpha)
    data = saved(im, "PNG", icc_profile=display_p3_profile())

    loaded = load_image(data)

    assert loaded.mode == "RGBA"
    assert np.array_equal(np.asarray(loaded.getchannel("A")), np.asarray(alpha))
    expected = to_srgb_reference(PATCHES[:4], P3_PRIMARIES, srgb_decode)
    assert delta_e76(patch_means(loaded, 4), expected).max() < MAX_DELTA_E


# ---- Adobe RGB and CMYK ----


def test_an_adobe_rgb_photo_comes_out_in_srgb():
    """Debian's AdobeRGB1998.icc (colord-data) on a JPEG: the colours are Adobe RGB's, now in sRGB numbers."""
    if not ADOBE_RGB_ICC.is_file():
        pytest.fail(f"{ADOBE_RGB_ICC} is missing; scripts/ensure-tools installs colord-data")
    patches = PATCHES[:6]
    data = saved(patch_photo(patches), "JPEG", quality=95, subsampling=0, icc_profile=ADOBE_RGB_ICC.read_bytes())

    loaded = load_image(data)

    expected = to_srgb_reference(patches, ADOBE_PRIMARIES, lambda v: (np.asarray(v, float) / 255) ** ADOBE_GAMMA)
    assert loaded.mode == "RGB"
    differences = delta_e76(patch_means(loaded, len(patches)), expected)
    assert differences.max() < MAX_DELTA_E, differences.round(2)


def test_a_cmyk_jpeg_with_a_profile_is_converted_through_it():
    """Solid inks come out as the profile says (cyan is a printed cyan), not as Pillow's arithmetic would have it."""
    corners = [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 0), (1, 1, 0, 0), (0, 0, 0, 1)]
    data = saved(patch_photo([tuple(255 * v for v in corner) for corner in corners], "CMYK"), "JPEG", quality=95,
                 icc_profile=cmyk_profile())

    loaded = load_image(data)

    assert loaded.mode == "RGB"
    expected = np.array([ink_srgb(*corner) for corner in corners])
    differences = delta_e76(patch_means(loaded, len(corners)), expected)
    assert differences.max() < MAX_DELTA_E, differences.round(2)
    assert delta_e76(np.array([[0, 255, 255]]), expected[:1])[0] > 10  # what ignoring the profile gives


def test_a_cmyk_jpeg_without_a_profile_still_comes_out_rgb():
    """No profile to go by: Pillow's conversion, as browsers do for an untagged CMYK file."""
    data = saved(patch_photo([(255, 0, 0, 0), (0, 0, 0, 0)], "CMYK"), "JPEG", quality=95)

    loaded = load_image(data)

    assert loaded.mode == "RGB"
    assert np.abs(patch_means(loaded, 2) - [[0, 255, 255], [255, 255, 255]]).max() < 3


def test_a_grey_photo_with_a_grey_profile_comes_out_neutral_in_srgb_keeping_its_alpha():
    """Grey with gamma 2.2 is not sRGB's curve in the shadows; an LA PNG keeps every alpha value."""
    shades = [(20,), (60,), (128,), (230,)]
    expected = np.array([[srgb_encode((v / 255) ** 2.2)] * 3 for (v,) in shades])
    alpha = Image.linear_gradient("L").resize((PATCH * 4, PATCH))
    grey = patch_photo(shades, "L")
    with_alpha = Image.merge("LA", (grey, alpha))

    loaded_jpeg = load_image(saved(grey, "JPEG", quality=95, icc_profile=grey_profile()))
    loaded_png = load_image(saved(with_alpha, "PNG", icc_profile=grey_profile()))

    assert loaded_jpeg.mode == "RGB" and loaded_png.mode == "RGBA"
    assert delta_e76(patch_means(loaded_jpeg, 4), expected).max() < MAX_DELTA_E
    assert delta_e76(patch_means(loaded_png, 4), expected).max() < MAX_DELTA_E
    assert np.array_equal(np.asarray(loaded_png.getchannel("A")), np.asarray(alpha))


# ---- to_srgb itself ----


def test_an_untagged_image_is_taken_as_srgb_and_left_alone():
    im = Image.new("RGB", (4, 4), (10, 200, 30))
    assert to_srgb(im) is im


def test_an_srgb_tagged_image_is_not_converted_at_all():
    """Most photos carry an sRGB profile: converting them would cost time for nothing."""
    im = Image.new("RGB", (4, 4), (10, 200, 30))
    im.info["icc_profile"] = SRGB_ICC.read_bytes() if SRGB_ICC.is_file() else SRGB_PROFILE
    assert to_srgb(im) is im


def test_a_damaged_profile_is_ignored_like_a_browser_would():
    im = Image.new("RGB", (4, 4), (10, 200, 30))
    im.info["icc_profile"] = b"acsp" * 50
    assert to_srgb(im) is im


def test_to_srgb_leaves_the_callers_image_alone_unless_asked():
    """A copy by default; in_place converts the image itself (the loader's own decoded pixels)."""
    profile = display_p3_profile()
    im = Image.new("RGB", (4, 4), (255, 0, 0))
    im.info["icc_profile"] = profile

    converted = to_srgb(im)
    assert converted is not im and im.getpixel((0, 0)) == (255, 0, 0)
    assert converted.getpixel((0, 0)) == (255, 0, 0)  # P3 red is outside sRGB: clipped to sRGB's red
    im.paste((200, 40, 40), (0, 0, 4, 4))
    assert to_srgb(im, in_place=True) is im
    assert im.getpixel((0, 0)) != (200, 40, 40) and "icc_profile" not in im.info


def test_a_profiles_transform_is_built_once_and_reused():
    """Building a transform costs milliseconds; the worker converts thousands of photos from a few profiles."""
    profile = display_p3_profile() + b""  # a new bytes object each time, equal in value
    color._conversion.cache_clear()
    for _ in range(3):
        im = Image.new("RGB", (4, 4), (200, 40, 40))
        im.info["icc_profile"] = bytes(bytearray(profile))
        to_srgb(im)
    info = color._conversion.cache_info()
    assert (info.misses, info.hits) == (1, 2)


# ---- every output is sRGB and tagged ----


@pytest.mark.parametrize(("fmt", "suffix", "mode"), [("jpeg", "jpg", "RGB"), ("png", "png", "RGBA"),
                                                     ("webp", "webp", "RGBA"), ("webp", "webp", "RGB")])
def test_every_encoded_output_carries_the_srgb_profile(tmp_path, fmt, suffix, mode):
    data = encode(Image.new(mode, (16, 16), (10, 200, 30)), fmt)

    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.info.get("icc_profile") == SRGB_PROFILE
    read = exiftool_json(data, tmp_path, suffix, "-ICC_Profile:ColorSpaceData", "-ICC_Profile:ProfileDescription")
    assert read["ColorSpaceData"].strip() == "RGB" and "sRGB" in read["ProfileDescription"]
