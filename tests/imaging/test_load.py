"""imaging/load.py: hostile and awkward uploads become an upright RGB(A) image or one of our errors, nothing else."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, features

from catalog_service.imaging.errors import CorruptImage, ImageRejected, ImageTooLarge, UnsupportedImage
from catalog_service.imaging.load import (
    HEIF_SUPPORTED,
    ImageInfo,
    _draft_scale_target,
    _normalise_mode,
    _peak_bytes,
    load_image,
    probe,
    sniff_format,
)

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
avif_only = pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")


# ---- builders: every input is made here, nothing binary is committed ----


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    """Bytes of `im` saved by Pillow in `fmt`."""
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def exif_with_orientation(orientation: int) -> bytes:
    """EXIF block carrying only an orientation tag."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with a valid CRC, so Pillow believes it."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, rows: bytes = b"") -> bytes:
    """Hand-built PNG: an IHDR saying whatever we like, then `rows` (filter bytes included) as the image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def frames(colours: list[tuple[int, int, int]], size: tuple[int, int] = (16, 16)) -> list[Image.Image]:
    """Solid frames, one per colour, for animations."""
    return [Image.new("RGB", size, colour) for colour in colours]


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    """Pixel equality within lossy-codec noise."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def cmyk_with_red_corner(orientation: int | None = None) -> bytes:
    """60x40 CMYK JPEG, white with a red block in the stored top-left corner, optionally tagged with an orientation."""
    im = Image.new("CMYK", (60, 40), (0, 0, 0, 0))
    im.paste((0, 255, 255, 0), (0, 0, 20, 20))
    params = {"quality": 95} | ({"exif": exif_with_orientation(orientation)} if orientation else {})
    return encode(im, "JPEG", **params)


@pytest.fixture(scope="module")
def photo_12mp() -> bytes:
    """A 4000x3000 JPEG: the size a phone camera uploads."""
    im = Image.new("RGB", (4000, 3000), (200, 180, 160))
    im.paste(BLUE, (1000, 1000, 3000, 2000))
    return encode(im, "JPEG", quality=85)


# ---- sniffing ----


@pytest.mark.parametrize(
    ("fmt", "pillow_format"),
    [("jpeg", "JPEG"), ("png", "PNG"), ("gif", "GIF"), ("webp", "WEBP"), ("tiff", "TIFF"), ("bmp", "BMP"),
     pytest.param("avif", "AVIF", marks=avif_only)],
)
def test_sniff_format_names_each_format_by_its_magic_bytes(fmt, pillow_format):
    """A file Pillow wrote as each format is recognised from its first bytes alone."""
    assert sniff_format(encode(Image.new("RGB", (4, 4)), pillow_format)) == fmt


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", "avif"),
        (b"\x00\x00\x00\x14ftypisom\x00\x00\x00\x00mp41", None),
    ],
)
def test_sniff_format_reads_iso_media_brands(header, fmt):
    """HEIC and AVIF share a container; the ftyp brands tell them apart, and an MP4 video is neither."""
    assert sniff_format(header + b"\x00" * 32) == fmt


@pytest.mark.parametrize(
    "data",
    [b"", b"<!doctype html><html><body>Sign in</body></html>", b"%PDF-1.7\n", b"PK\x03\x04zipzip", b"hello", b"BM"],
)
def test_sniff_format_returns_none_for_non_images(data):
    """Web pages, PDFs, archives, text and a bare "BM" are not images."""
    assert sniff_format(data) is None


# ---- not an image at all ----


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\n  <!DOCTYPE html><html><head><title>Login</title></head></html>", "web page"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"PK\x03\x04\x14\x00\x00\x00", "ZIP"),
        (b"just some text the shop typed", "not an image format"),
        (random.Random(7).randbytes(4096), "not an image format"),
    ],
)
def test_non_images_are_unsupported_with_a_reason(data, says):
    """Whatever a broken product URL served instead of a photo, the merchant is told what it was and what to send."""
    for call in (load_image, probe):
        with pytest.raises(UnsupportedImage) as caught:
            call(data)
        assert says in str(caught.value)
        assert "JPEG, PNG or WebP" in str(caught.value)


@pytest.mark.skipif(HEIF_SUPPORTED, reason="pillow-heif is installed, so HEIC decodes")
def test_heic_is_refused_by_name_when_the_plugin_is_missing():
    """An iPhone HEIC upload without pillow-heif gets a message naming HEIC and the fix."""
    with pytest.raises(UnsupportedImage, match="HEIC.*JPEG"):
        load_image(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)


# ---- size limits ----


@pytest.mark.parametrize(
    ("width", "height", "max_pixels", "says"),
    [
        (30_000, 30_000, 50_000_000, "the limit is 50 MP"),
        (100_000, 100_000, 50_000_000, "the limit is 50 MP"),  # Pillow's own bomb check fires first here
        (1, 70_000, 50_000_000, "65535 px"),
        (12_000, 9_000, 200_000_000, "limit"),  # over Pillow's warning threshold: its warning becomes ours
        (20_000, 20_000, 500_000_000, "limit"),  # over twice that: Pillow's DecompressionBombError becomes ours
    ],
)
def test_bomb_headers_are_refused_before_any_decoding(width, height, max_pixels, says):
    """A 200-byte PNG claiming billions of pixels is refused from its header, and Pillow's global limit is untouched."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    bomb = raw_png(width, height, rows=b"\x00")  # one byte of pixel data: decoding would fail, so refusal came first
    for call in (load_image, probe):
        with pytest.raises(ImageTooLarge, match=says):
            call(bomb, max_pixels=max_pixels)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_a_real_png_over_a_small_cap_names_its_size_and_the_limit():
    """A 4 MP PNG (compressed to almost nothing) is refused under a 1 MP cap, and the message says both numbers."""
    data = encode(Image.new("RGB", (2000, 2000), RED), "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageTooLarge) as caught:
        load_image(data, max_pixels=1_000_000)
    assert str(caught.value) == "The image is 2000x2000 (4 MP); the limit is 1 MP. Upload a smaller photo."


def test_an_image_exactly_at_the_cap_is_accepted():
    """The cap is inclusive: 1000x1000 loads under max_pixels=1_000_000."""
    assert load_image(encode(Image.new("RGB", (1000, 1000)), "PNG"), max_pixels=1_000_000).size == (1000, 1000)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0)])
def test_zero_sized_headers_are_rejected(width, height):
    """A PNG header with a zero side is damaged, not an empty picture."""
    with pytest.raises(ImageRejected):
        load_image(raw_png(width, height))


def test_one_pixel_image_loads():
    """The smallest possible image is still an image, and max_side never enlarges it."""
    im = load_image(encode(Image.new("RGB", (1, 1), GREEN), "PNG"), max_side=1024)
    assert (im.size, im.mode, im.getpixel((0, 0))) == ((1, 1), "RGB", GREEN)


def test_a_long_thin_strip_under_the_cap_loads_and_scales_to_one_pixel_high():
    """20000x10 is odd but legal; fitted to 1024 px it keeps a one-pixel height instead of vanishing."""
    data = encode(Image.new("RGB", (20_000, 10), BLUE), "PNG")
    assert load_image(data).size == (20_000, 10)
    assert load_image(data, max_side=1024).size == (1024, 1)


def test_max_side_must_be_positive():
    """max_side=0 is a caller bug, not a merchant's problem."""
    with pytest.raises(ValueError, match="max_side"):
        load_image(encode(Image.new("RGB", (4, 4)), "PNG"), max_side=0)


# ---- damaged files ----


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_files_are_corrupt(fmt):
    """A photo cut off mid-download is reported as damaged, never half-decoded."""
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(CorruptImage, match="damaged or incomplete"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", pytest.param("AVIF", marks=avif_only)])
def test_fuzzed_files_raise_only_our_errors(fmt):
    """Randomly damaged files either decode to RGB(A) or raise an ImageRejected: no Pillow exception leaks out."""
    rng = random.Random(fmt)
    original = encode(Image.new("RGB", (40, 30), RED), fmt)
    for _ in range(60):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            im = load_image(bytes(damaged[: rng.randint(len(damaged) // 2, len(damaged))]))
        except ImageRejected:
            continue
        assert im.mode in ("RGB", "RGBA")


def test_probe_reads_the_header_without_decoding():
    """A JPEG cut off after its header still probes (so probe never decoded it), while load_image refuses it."""
    data = cmyk_with_red_corner(orientation=6)
    header_only = data[: data.index(b"\xff\xda") + 20]  # up to just inside the start of scan
    assert probe(header_only) == ImageInfo("jpeg", 40, 60)
    with pytest.raises(CorruptImage):
        load_image(header_only)


def test_broken_exif_keeps_the_photo():
    """Garbage in the EXIF block costs the merchant the orientation, not the photo."""
    data = encode(Image.new("RGB", (30, 20), GREEN), "JPEG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff")
    assert load_image(data).size == (30, 20)
    assert probe(data) == ImageInfo("jpeg", 30, 20)


# ---- orientation and colour modes ----


def test_cmyk_jpeg_becomes_rgb():
    """A print-shop CMYK JPEG comes out as RGB with its red still red."""
    im = load_image(cmyk_with_red_corner())
    assert im.mode == "RGB"
    assert close_to(im.getpixel((5, 5)), RED)
    assert close_to(im.getpixel((50, 30)), (255, 255, 255))


def test_cmyk_jpeg_with_orientation_6_is_turned_upright():
    """Orientation 6 means "turn 90 degrees clockwise": sides swap and the stored top-left lands top-right."""
    im = load_image(cmyk_with_red_corner(orientation=6))
    assert (im.mode, im.size) == ("RGB", (40, 60))
    assert close_to(im.getpixel((35, 5)), RED)
    assert close_to(im.getpixel((5, 5)), (255, 255, 255))
    assert ExifTags.Base.Orientation not in im.getexif()


def test_max_side_applies_to_the_upright_image():
    """A 60x40 photo tagged to stand upright fits into 30 px as 20x30, not 30x20."""
    assert load_image(cmyk_with_red_corner(orientation=6), max_side=30).size == (20, 30)


def test_probe_agrees_with_load_image():
    """probe's size is the size load_image returns, orientation included."""
    for data in (cmyk_with_red_corner(orientation=8), encode(Image.new("RGB", (7, 3)), "WEBP")):
        info = probe(data)
        assert (info.width, info.height) == load_image(data).size


def test_palette_png_with_transparency_becomes_rgba():
    """A GIF-style palette PNG keeps its see-through pixels as alpha 0."""
    im = Image.new("P", (4, 2), 1)
    im.putpalette([0, 0, 0, 255, 0, 0])
    im.putpixel((0, 0), 0)
    out = load_image(encode(im, "PNG", transparency=0))
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0
    assert out.getpixel((3, 1)) == (255, 0, 0, 255)


def test_16_bit_greyscale_png_is_scaled_not_clipped():
    """16-bit white (65535) becomes 8-bit white (255), and mid-grey stays mid-grey."""
    grey16 = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    out = load_image(encode(grey16, "PNG"))
    assert out.mode == "RGB"
    assert [out.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


@pytest.mark.parametrize(
    ("colour_type", "pixel", "expected"),
    [(2, b"\xff\xff\x80\x00\x00\x00", (255, 128, 0)), (6, b"\xff\xff\x80\x00\x00\x00\x80\x00", (255, 128, 0, 128))],
)
def test_16_bit_colour_pngs_are_normalised(colour_type, pixel, expected):
    """16-bit RGB and RGBA PNGs come out 8-bit, keeping the high byte of each channel."""
    out = load_image(raw_png(2, 1, bit_depth=16, colour_type=colour_type, rows=b"\x00" + pixel * 2))
    assert out.getpixel((1, 0)) == expected


def test_la_png_becomes_rgba():
    """Grey with alpha keeps its alpha."""
    out = load_image(encode(Image.new("LA", (3, 3), (200, 50)), "PNG"))
    assert (out.mode, out.getpixel((1, 1))) == ("RGBA", (200, 200, 200, 50))


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("1", 1, (255, 255, 255)),
        ("L", 77, (77, 77, 77)),
        ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
        ("RGBa", (0, 0, 0, 0), (0, 0, 0, 0)),
        ("La", (0, 0), (0, 0, 0, 0)),
        ("PA", (0, 128), (0, 0, 0, 128)),
        ("I", 65535, (255, 255, 255)),
        ("F", 32896.0, (128, 128, 128)),
        ("CMYK", (0, 0, 0, 255), (0, 0, 0)),
        ("YCbCr", (255, 128, 128), (255, 255, 255)),
    ],
)
def test_every_mode_normalises_to_rgb_or_rgba(mode, colour, expected):
    """Whatever mode a decoder hands back, the pipeline sees RGB, or RGBA when there is alpha."""
    out = _normalise_mode(Image.new(mode, (2, 2), colour))
    assert out.mode == ("RGBA" if len(expected) == 4 else "RGB")
    assert out.getpixel((1, 1)) == expected


# ---- animation and other formats ----


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_load_their_first_frame(fmt):
    """Animated GIF, WebP and APNG: the first frame's colour, normalised like any still."""
    first, *rest = frames([RED, GREEN, BLUE])
    data = encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = load_image(data)
    assert out.mode in ("RGB", "RGBA")
    assert close_to(out.getpixel((8, 8))[:3], RED)


def test_webp_with_alpha_becomes_rgba():
    """A transparent WebP keeps its transparency."""
    im = Image.new("RGBA", (8, 8), (0, 0, 255, 0))
    im.paste((0, 0, 255, 255), (0, 0, 4, 8))
    out = load_image(encode(im, "WEBP", lossless=True))
    assert (out.mode, out.getpixel((1, 1))[3], out.getpixel((6, 6))[3]) == ("RGBA", 255, 0)


@avif_only
def test_avif_loads():
    """AVIF photos decode to RGB with roughly their colour."""
    out = load_image(encode(Image.new("RGB", (32, 32), GREEN), "AVIF", quality=90))
    assert out.mode == "RGB" and out.size == (32, 32)
    assert close_to(out.getpixel((16, 16)), GREEN, tolerance=20)
    assert probe(encode(Image.new("RGB", (32, 16)), "AVIF")) == ImageInfo("avif", 32, 16)


# ---- scaled decoding ----


@pytest.mark.parametrize(
    ("size", "max_side", "target"),
    [
        ((4000, 3000), 1024, (1024, 768)),
        ((3000, 4000), 1024, (768, 1024)),
        ((4000, 3000), 333, (333, 250)),  # 249.75 rounds up: draft must never undershoot
        ((20_000, 10), 1024, (1024, 1)),
        ((1000, 500), 1000, None),
        ((1000, 500), 2000, None),
    ],
)
def test_draft_scale_target_is_the_exact_fit_rounded_up(size, max_side, target):
    """The box handed to draft() is the image fitted into max_side, rounded up; None when nothing shrinks."""
    assert _draft_scale_target(size, max_side) == target


@pytest.mark.parametrize(
    ("max_side", "drafted"), [(1024, (2000, 1500)), (600, (1000, 750)), (500, (500, 375)), (3999, (4000, 3000))]
)
def test_draft_decodes_at_the_smallest_scale_that_still_covers_max_side(photo_12mp, max_side, drafted):
    """libjpeg's scaled decode (1/2, 1/4, 1/8) is used as far as it goes, never below max_side."""
    im = Image.open(io.BytesIO(photo_12mp))
    im.draft("RGB", _draft_scale_target(im.size, max_side))
    assert im.size == drafted
    assert max(im.size) >= max_side


@pytest.mark.parametrize(("max_side", "size"), [(1024, (1024, 768)), (500, (500, 375)), (333, (333, 250))])
def test_12_mp_jpeg_is_fitted_to_max_side_exactly(photo_12mp, max_side, size):
    """A phone photo asked for at max_side comes back exactly that long, its colours in place."""
    im = load_image(photo_12mp, max_side=max_side)
    assert (im.mode, im.size) == ("RGB", size)
    assert close_to(im.getpixel((size[0] // 2, size[1] // 2)), BLUE)
    assert close_to(im.getpixel((2, 2)), (200, 180, 160))


def test_non_jpeg_formats_are_fitted_after_decoding():
    """PNG has no scaled decode, but the result is fitted to max_side all the same."""
    assert load_image(encode(Image.new("RGBA", (900, 300)), "PNG"), max_side=90).size == (90, 30)


def test_draft_slack_decodes_at_half_scale_just_below_max_side() -> None:
    """A 4000x3000 JPEG for a 2048 cap with 5% slack decodes at 2000x1500, no resample; exact without slack."""
    photo = Image.new("RGB", (4000, 3000), (90, 120, 200))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=80)
    assert load_image(out.getvalue(), max_side=2048, draft_slack=0.05).size == (2000, 1500)
    assert load_image(out.getvalue(), max_side=2048).size == (2048, 1536)
    assert load_image(out.getvalue(), max_side=1900, draft_slack=0.05).size == (1900, 1425)


# ---- memory: a budget in bytes, not only pixels ----


def lossless_webp_header(width: int, height: int) -> bytes:
    """34 bytes: a RIFF/WEBP file whose VP8L header says width x height; the pixel data is never reached."""
    bits = (width - 1) | ((height - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 8
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l + b"\x00" * (len(vp8l) % 2)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def rgba16_png(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG with real pixel data (a ramp), streamed through zlib row by row."""
    ramp = np.linspace(0, 65535, width, dtype=np.uint16)
    row = b"\x00" + np.stack([ramp, ramp[::-1], ramp, np.full_like(ramp, 40000)], axis=1).astype(">u2").tobytes()
    pack = zlib.compressobj(1)
    idat = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def test_a_tiny_webp_claiming_16383x3000_is_refused_for_its_memory():
    """49 MP is under the 50 MP cap, but a WebP that size needs far more memory than 4 bytes a pixel allow."""
    real = encode(Image.new("RGB", (16383, 3000), GREEN), "WEBP", lossless=True)
    for data in (lossless_webp_header(16383, 3000), real):
        assert len(data) < 5000
        with pytest.raises(ImageTooLarge) as caught:
            load_image(data, max_side=2048)
        message = str(caught.value)
        assert "16383x3000 WebP needs" in message and "over the 200 MB" in message
        assert "Upload a smaller photo" in message


def test_a_7000x7000_16_bit_rgba_png_is_refused_for_its_memory():
    """A 16-bit PNG with alpha at 49 MP: decoded, premultiplied and resampled it would take over twice the budget."""
    data = raw_png(7000, 7000, bit_depth=16, colour_type=6, rows=b"\x00")
    with pytest.raises(ImageTooLarge, match="7000x7000 PNG with transparency needs .* MB"):
        load_image(data, max_side=2048)


def test_the_budget_counts_bytes_per_pixel_by_format_and_mode():
    """Same pixels, same budget: the RGB PNG fits, the RGBA PNG (premultiplied copy) and the WebP (libwebp's buffers)
    do not."""
    size, budget = (1000, 1000), 10_000_000
    assert load_image(encode(Image.new("RGB", size, RED), "PNG"), max_side=500, max_bytes=budget).size == (500, 500)
    for data in (encode(Image.new("RGBA", size, (1, 2, 3, 4)), "PNG"), encode(Image.new("RGB", size, RED), "WEBP")):
        with pytest.raises(ImageTooLarge, match="MB of memory"):
            load_image(data, max_side=500, max_bytes=budget)
    webp = encode(Image.new("RGB", size, RED), "WEBP")
    assert load_image(webp, max_side=500, max_bytes=30_000_000).size == (500, 500)


def test_the_default_budget_is_four_bytes_a_pixel_of_the_cap():
    """A 1000x1000 RGB PNG needs 4 MB: it fits a 1 MP cap exactly, and 1 MP of RGBA resampled does not."""
    assert load_image(encode(Image.new("RGB", (1000, 1000)), "PNG"), max_pixels=1_000_000).size == (1000, 1000)
    with pytest.raises(ImageTooLarge, match="over the 4 MB"):
        load_image(encode(Image.new("RGBA", (1000, 1000), (1, 2, 3, 4)), "PNG"), max_pixels=1_000_000, max_side=500)


_MEASURE = r"""
import json, sys
from PIL import Image
from catalog_service.imaging import load
from catalog_service.imaging.errors import ImageRejected

data = open(sys.argv[1], "rb").read()
options = json.loads(sys.argv[2])
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # the peak resident size starts again from the current one

def kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))

before = kb("VmRSS")
try:
    out = load.load_image(data, **options)
    result = [out.mode, list(out.size)]
except ImageRejected as exc:
    result = str(exc)
print(json.dumps({"grew": (kb("VmHWM") - before) * 1024, "result": result}))
"""

measurable = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak resident size from /proc")


def decode_in_a_fresh_process(tmp_path, data: bytes, **options) -> dict:
    """Decode in a new interpreter; how much its resident size grew at the peak, and the mode and size (or refusal)."""
    path = tmp_path / "image"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), json.dumps(options)], capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def budget_counted(data: bytes, max_side: int | None) -> int:
    """The bytes load_image's budget check counts for data."""
    im = Image.open(io.BytesIO(data))
    if max_side and (target := _draft_scale_target(im.size, max_side)):
        im.draft("RGB", target)
    return _peak_bytes(sniff_format(data) or "", im, max_side)


def noise(mode: str, size: tuple[int, int] = (3000, 2000)) -> Image.Image:
    """A photo-like image (smooth noise) in mode."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, bands), dtype=np.uint8)
    return Image.fromarray(small.squeeze(), mode if mode != "P" else "L").resize(size).convert(mode)


@measurable
@pytest.mark.parametrize("max_side", [None, 2048])
@pytest.mark.parametrize(
    "make",
    [
        lambda: rgba16_png(3000, 2000),
        lambda: encode(noise("RGB"), "WEBP", quality=80),
        lambda: encode(noise("RGBA"), "WEBP", lossless=True),
        lambda: encode(noise("P"), "PNG", transparency=0, compress_level=1),
        lambda: encode(noise("LA"), "PNG", compress_level=1),
        lambda: encode(Image.fromarray(np.asarray(noise("L"), np.uint16) * 257), "PNG", compress_level=1),
        lambda: encode(noise("RGB"), "JPEG", quality=85),
    ],
    ids=["png-rgba-16-bit", "webp-rgb", "webp-rgba-lossless", "png-palette-transparent", "png-la", "png-grey-16-bit",
         "jpeg"],
)
def test_a_decode_stays_within_the_memory_its_budget_counted(tmp_path, make, max_side) -> None:
    """Measured in a fresh process: the resident size never grows past what the budget check counted."""
    data = make()
    counted = budget_counted(data, max_side)
    measured = decode_in_a_fresh_process(tmp_path, data, max_side=max_side, max_bytes=counted)
    assert measured["result"][0] in ("RGB", "RGBA"), measured
    assert measured["grew"] <= counted + 4_000_000, f"grew {measured['grew'] / 1e6:.0f} MB, counted {counted / 1e6:.0f}"


@measurable
@pytest.mark.parametrize("data", [lossless_webp_header(16383, 3000), raw_png(7000, 7000, bit_depth=16, colour_type=6)],
                         ids=["webp-16383x3000", "png-7000x7000-rgba-16-bit"])
def test_hostile_files_are_refused_before_their_pixels_cost_anything(tmp_path, data: bytes) -> None:
    """The refusal comes from the header: the process grows by a few MB, not the gigabyte a decode took."""
    measured = decode_in_a_fresh_process(tmp_path, data, max_side=2048)
    assert "MB of memory" in measured["result"]
    assert measured["grew"] < 20_000_000


# ---- colour profiles (imaging/color.py does the conversion; these check the loader's use of it) ----

ADOBE_RGB_ICC = "/usr/share/color/icc/colord/AdobeRGB1998.icc"  # colord-data, installed by scripts/ensure-tools


def adobe_rgb() -> bytes:
    with open(ADOBE_RGB_ICC, "rb") as profile:
        return profile.read()


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True}), ("JPEG", {"quality": 95})])
def test_a_tagged_photo_is_converted_to_srgb_in_every_format(fmt, params):
    """The same Adobe RGB green, tagged in PNG, WebP or JPEG, loads as the same sRGB colour, not as its raw numbers."""
    green = (60, 180, 75)
    data = encode(Image.new("RGB", (32, 32), green), fmt, icc_profile=adobe_rgb(), **params)

    loaded = load_image(data)

    assert "icc_profile" not in loaded.info
    r, g, b = loaded.getpixel((16, 16))
    # Adobe RGB's green primary lies outside sRGB: in sRGB numbers the same colour has less red and blue.
    assert r < green[0] - 20 and b < green[2] - 5 and abs(g - 190) <= 12, (r, g, b)


def test_a_grey_jpeg_tagged_with_an_rgb_profile_becomes_rgb_in_srgb():
    """Grey photos sometimes carry an RGB profile: the grey is converted through it, and stays neutral."""
    data = encode(Image.new("L", (32, 32), 30), "JPEG", quality=95, icc_profile=adobe_rgb())

    loaded = load_image(data)

    r, g, b = loaded.getpixel((16, 16))
    # Adobe RGB's gamma 2.2 and the sRGB curve part in the shadows: 30 is sRGB's 24 ((30/255)^2.2, sRGB-encoded).
    assert loaded.mode == "RGB" and max(r, g, b) - min(r, g, b) <= 1 and abs(r - 24) <= 2, (r, g, b)


def test_converting_after_the_fit_gives_the_colours_of_converting_before_it():
    """The loader converts the fitted pixels only (a per-pixel change); a tagged 3000x2000 PNG fitted to 600 px
    comes out as converting the whole photo first would have made it, within a level or two where saturated
    noise is clipped to the sRGB gamut."""
    data = encode(noise("RGB"), "PNG", icc_profile=adobe_rgb(), compress_level=1)
    untagged = load_image(encode(noise("RGB"), "PNG", compress_level=1), max_side=600)

    loaded = load_image(data, max_side=600)

    assert loaded.size == untagged.size == (600, 400)
    whole = np.asarray(load_image(data), dtype=int)  # converted at full size ...
    fitted_after = np.asarray(Image.fromarray(whole.astype(np.uint8)).resize(
        (600, 400), Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=int)  # ... then fitted
    assert np.abs(np.asarray(loaded, dtype=int) - fitted_after).mean() < 2.0
    assert np.abs(np.asarray(loaded, dtype=int) - np.asarray(untagged, dtype=int)).mean() > 3


@measurable
@pytest.mark.parametrize("max_side", [None, 2048])
@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(noise("RGB"), "JPEG", quality=85, icc_profile=adobe_rgb()),
        lambda: encode(noise("RGBA"), "PNG", compress_level=1, icc_profile=adobe_rgb()),
        lambda: encode(noise("RGB"), "WEBP", quality=80, icc_profile=adobe_rgb()),
    ],
    ids=["jpeg-adobe-rgb", "png-rgba-adobe-rgb", "webp-adobe-rgb"],
)
def test_a_tagged_decode_stays_within_the_memory_its_budget_counted(tmp_path, make, max_side) -> None:
    """The conversion to sRGB happens in place: a tagged photo needs no more memory than an untagged one."""
    data = make()
    counted = budget_counted(data, max_side)
    measured = decode_in_a_fresh_process(tmp_path, data, max_side=max_side, max_bytes=counted)
    assert measured["result"][0] in ("RGB", "RGBA"), measured
    assert measured["grew"] <= counted + 4_000_000, f"grew {measured['grew'] / 1e6:.0f} MB, counted {counted / 1e6:.0f}"
