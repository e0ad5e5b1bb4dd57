"""Prompts for GPT Image scenes, filled from the product's data and a scene preset. Pure: strings in, string out.

The order follows what works for GPT Image edits: subject, environment, lighting, style, technical specs, then
the constraints (keep the product as it is; what the reference images are for; the exact text, if any).
"""

from __future__ import annotations

import dataclasses
import math
import re
from html.parser import HTMLParser

from catalog_service.scenes.base import ProductInfo, ScenePreset

MAX_DESCRIPTION_CHARS = 400
"""Longest product description, in characters, that goes into a prompt (cut at a word boundary)."""
MAX_TITLE_CHARS = 200
"""Longest product title, vendor or product type, in characters, that goes into a prompt."""
MAX_TAGS = 12
"""Most product tags named in a prompt."""
MAX_TEXT_CHARS = 80
"""Longest text a scene may ask the model to render; longer text belongs in an overlay, not in the model's hands."""

_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "head", "title", "svg"})
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML fragment; entities are decoded by HTMLParser (convert_charrefs)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_html(html: str) -> str:
    """The visible text of an HTML fragment: tags dropped, script/style content dropped, entities decoded,
    whitespace collapsed to single spaces."""
    parser = _TextExtractor()
    parser.feed(html or "")
    parser.close()
    return _collapse("".join(parser.parts))


def _collapse(text: str) -> str:
    """Control characters removed and every run of whitespace (including no-break spaces) made one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


@dataclasses.dataclass(frozen=True)
class Look:
    """How a scene is lit and styled; the built-in presets each have one, any other preset gets DEFAULT_LOOK."""

    lighting: str
    style: str


DEFAULT_LOOK = Look(
    lighting="Soft, natural light that suits the setting, coming from one side, with gentle highlights on the "
    "product and a realistic contact shadow where it meets the surface.",
    style="High-end commercial product photography for an online shop: true-to-life colours, a clean, "
    "uncluttered composition, the product as the clear hero of the frame, props kept few and secondary.",
)

BUILTIN_OPENAI_PRESETS: tuple[ScenePreset, ...] = (
    ScenePreset(
        name="kitchen-counter",
        style="prompt",
        prompt="The product stands on a light stone kitchen counter in a bright, modern kitchen. Behind it, "
        "slightly out of focus, a tiled backsplash, a wooden cutting board and a small potted herb; the counter "
        "is clean and uncluttered, with the product in the front third of the frame.",
    ),
    ScenePreset(
        name="studio",
        style="prompt",
        prompt="The product stands alone on a seamless paper sweep in a soft warm grey, in a professional photo "
        "studio. Nothing else in the frame: no props, no text, only the product, its shadow and a smooth, "
        "gently graded background.",
    ),
    ScenePreset(
        name="outdoor",
        style="prompt",
        prompt="The product rests on a weathered flat rock on a sunny terrace outdoors, with soft green foliage "
        "and a hint of blue sky in the blurred background. The setting is fresh and natural, with a few leaves "
        "on the rock for scale.",
    ),
    ScenePreset(
        name="flat-lay",
        style="prompt",
        prompt="A top-down flat lay on a matte off-white linen surface: the product lies in the centre, seen from "
        "directly above, with two or three small, related props arranged neatly around it and generous empty "
        "space between them.",
    ),
    ScenePreset(
        name="seasonal",
        style="prompt",
        prompt="The product stands on a rustic wooden table in a cosy festive setting: a few sprigs of evergreen, "
        "pine cones and a softly glowing string of warm fairy lights blurred into bokeh behind it, with a "
        "folded wool throw at one edge of the frame.",
    ),
)

LOOKS: dict[str, Look] = {
    "kitchen-counter": Look(
        lighting="Bright morning daylight from a window at the side, soft and diffused, with a gentle contact "
        "shadow and a faint reflection of the product in the stone.",
        style="Warm, inviting lifestyle photography for a home and kitchen shop, natural colours, shallow "
        "depth of field so the background reads as a kitchen without competing with the product.",
    ),
    "studio": Look(
        lighting="Large softbox key light from the upper left, a white fill card on the right and a subtle rim "
        "light separating the product from the background; soft, accurate shadows.",
        style="Clean catalogue photography: neutral colour balance, crisp edges, premium and minimal.",
    ),
    "outdoor": Look(
        lighting="Late-afternoon sunlight, warm and low, with soft shadows and a natural highlight along the "
        "product's edge; no harsh glare.",
        style="Fresh outdoor lifestyle photography with a shallow depth of field and a softly blurred, "
        "natural background.",
    ),
    "flat-lay": Look(
        lighting="Even, shadow-soft daylight from above, as under a large north-facing window; short, soft "
        "shadows beneath the product and props.",
        style="Editorial flat-lay photography: orderly, airy composition, muted complementary colours, "
        "the product the largest and most prominent object.",
    ),
    "seasonal": Look(
        lighting="Warm, low ambient light with the glow of the fairy lights behind and a soft key light on "
        "the product, so it stays bright and true to colour.",
        style="Cosy holiday lifestyle photography, warm tones, inviting and gift-like, with the product "
        "sharp and the festive details softly out of focus.",
    ),
}


def look_for(preset: ScenePreset) -> Look:
    """The lighting and style for a preset: its built-in look, or the default one."""
    return LOOKS.get(preset.name, DEFAULT_LOOK)


def describe_size(width: int, height: int) -> str:
    """The frame in words, e.g. '1536x1024 pixels, landscape (3:2)'."""
    divisor = math.gcd(width, height) or 1
    ratio = f"{width // divisor}:{height // divisor}"
    shape = "square" if width == height else ("landscape" if width > height else "portrait")
    return f"{width}x{height} pixels, {shape} ({ratio})"


def clean_text(text: str) -> str:
    """The merchant's text as one line: control characters and surrounding whitespace removed."""
    return _collapse(text or "")


def _subject(product: ProductInfo) -> str:
    title = _truncate(_collapse(product.title), MAX_TITLE_CHARS)
    kind = _truncate(_collapse(product.product_type), MAX_TITLE_CHARS)
    vendor = _truncate(_collapse(product.vendor), MAX_TITLE_CHARS)
    name = f'"{title}"' if title else "the product"
    what = f"a {kind}" if kind else "a product"
    line = f"Subject: {name}, {what}" + (f" by {vendor}" if vendor else "") + ", shown in the first input image."
    description = _truncate(strip_html(product.description), MAX_DESCRIPTION_CHARS)
    if description:
        line += f" About the product: {description}" + ("" if description.endswith((".", "!", "?", "…")) else ".")
    tags = [_collapse(tag) for tag in product.tags]
    tags = [tag for tag in tags if tag][:MAX_TAGS]
    if tags:
        line += f" Keywords: {', '.join(tags)}."
    return line


def _spelled(text: str) -> str:
    """Each word spelled out character by character, words separated by ' / ', e.g. 'S A L E / - 2 0 %'."""
    return " / ".join(" ".join(word) for word in text.split(" "))


def build_prompt(product: ProductInfo, preset: ScenePreset, *, text: str = "", references: int = 0) -> str:
    """The GPT Image prompt for one scene of one product.

    The first input image is the product cutout; `references` more input images follow it and are style and
    setting references only. `text`, when given, is rendered verbatim as a small badge (at most MAX_TEXT_CHARS;
    the provider refuses longer text before calling).
    """
    look = look_for(preset)
    environment = _collapse(preset.prompt) or "A clean, simple setting that suits the product."
    lines = [
        _subject(product),
        f"Scene: {environment}",
        f"Lighting: {look.lighting}",
        f"Style: {look.style}",
        "Technical: a photorealistic commercial product photograph, sharp focus on the product, realistic "
        "perspective and scale, natural contact shadows and reflections, no motion blur, no visible noise; "
        f"the frame is {describe_size(preset.width, preset.height)}, with the whole product in frame and room "
        "around it.",
        "Keep the product unchanged: the first input image is the product itself, cut out from its photo. Place "
        "exactly that product in the scene and reproduce it faithfully - the same shape, proportions, colours, "
        "materials, label text and logo, with nothing redrawn, restyled, relabelled, added or removed. Only the "
        "surroundings, lighting and shadows around it are new.",
    ]
    if references > 0:
        which = "The second input image is" if references == 1 else f"The following {references} input images are"
        lines.append(
            f"References: {which} style and setting references only. Take the mood, colour palette, surfaces and "
            "setting from them; never copy products, people, text or logos from them into the scene."
        )
    cleaned = clean_text(text)
    if cleaned:
        lines.append(
            f'Text: render exactly this text, verbatim, once: "{cleaned}" (spelled: {_spelled(cleaned)}). Set it '
            "in a clean, legible sans-serif on a small, simple badge or banner near a corner of the frame, not "
            "covering or touching the product. Check the spelling letter by letter; add no other text."
        )
    else:
        lines.append(
            "Add no text, captions, watermarks or logos to the scene beyond what is printed on the product itself."
        )
    return "\n".join(lines)


MAX_INSTRUCTION_CHARS = 4000
"""Longest refine instruction, in characters, a merchant may give."""


def build_refine_prompt(instruction: str, *, masked: bool = False) -> str:
    """The prompt to refine an existing scene: the merchant's instruction, then keep-everything-else-unchanged."""
    where = " inside the transparent area of the mask" if masked else ""
    return (
        f"Edit this product photograph{where}: {_collapse(instruction)}\n"
        "Change only what the instruction asks for. Keep everything else unchanged: the same composition, "
        "framing, background, lighting and colours. Keep the product unchanged - its shape, proportions, colours, "
        "materials, label text and logo exactly as they are. Keep it a photorealistic product photograph."
    )
