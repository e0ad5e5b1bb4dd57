"""Exact text on a finished scene, drawn with Pillow: a badge in a corner, never over the middle."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

BADGE_FILL = (200, 30, 45)
BADGE_TEXT = (255, 255, 255)


def draw_badge(image: Image.Image, text: str, *, fill: tuple[int, int, int] = BADGE_FILL) -> Image.Image:
    """A copy of `image` with `text` in a rounded badge in the top-left corner, sized to the image."""
    text = " ".join(text.split())
    if not text:
        return image
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size = max(12, round(min(canvas.size) * 0.06))
    # Pillow's bundled font scales when FreeType is present (it is in the wheels); no font file to ship.
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad_x, pad_y = round(size * 0.6), round(size * 0.35)
    margin = round(min(canvas.size) * 0.04)
    box = (margin, margin, margin + (right - left) + 2 * pad_x, margin + (bottom - top) + 2 * pad_y)
    draw.rounded_rectangle(box, radius=round(size * 0.4), fill=fill)
    draw.text((box[0] + pad_x - left, box[1] + pad_y - top), text, font=font, fill=BADGE_TEXT)
    return canvas
