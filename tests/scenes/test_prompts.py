"""GPT Image prompts: HTML stripping, the order of the parts, the keep-unchanged rule, references and exact text."""

from __future__ import annotations

import pytest

from catalog_service.scenes.base import ProductInfo, ScenePreset
from catalog_service.scenes.prompts import (
    BUILTIN_OPENAI_PRESETS,
    DEFAULT_LOOK,
    LOOKS,
    MAX_DESCRIPTION_CHARS,
    build_prompt,
    build_refine_prompt,
    describe_size,
    look_for,
    strip_html,
)

PRODUCT = ProductInfo(
    title="Smoky Chipotle Hot Sauce",
    description="<p>Small-batch <b>chipotle</b> sauce &amp; lime.</p><script>track()</script><p>150&nbsp;ml</p>",
    product_type="hot sauce",
    vendor="Casa Fuego",
    tags=("vegan", "spicy", " "),
)
PRESETS = {preset.name: preset for preset in BUILTIN_OPENAI_PRESETS}


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<p>One</p><p>Two</p>", "One Two"),
        ("Fish &amp; chips &lt;3 &eacute;t&#233;", "Fish & chips <3 été"),
        ("<style>p {color: red}</style><script>alert('x')</script>Visible", "Visible"),
        ("  lots \n\n of\t\xa0space  ", "lots of space"),
        ("line<br>break<br/>here", "line break here"),
        ("", ""),
        ("<ul><li>a</li><li>b</li></ul>", "a b"),
    ],
)
def test_strip_html(html, text):
    """Tags, script and style content go; entities are decoded; whitespace collapses to single spaces."""
    assert strip_html(html) == text


def test_prompt_parts_come_in_order():
    """Subject, scene, lighting, style, technical, then keep-unchanged: the order GPT Image follows best."""
    prompt = build_prompt(PRODUCT, PRESETS["kitchen-counter"])
    labels = ["Subject:", "Scene:", "Lighting:", "Style:", "Technical:", "Keep the product unchanged"]
    positions = [prompt.index(label) for label in labels]
    assert positions == sorted(positions)


def test_subject_uses_the_product_data():
    """Title, type, vendor, tags and the stripped description describe the subject; empty tags are skipped."""
    prompt = build_prompt(PRODUCT, PRESETS["studio"])
    subject = prompt.splitlines()[0]
    assert '"Smoky Chipotle Hot Sauce", a hot sauce by Casa Fuego' in subject
    assert "Small-batch chipotle sauce & lime. 150 ml" in subject
    assert "track()" not in prompt and "<" not in subject
    assert "150 ml. Keywords: vegan, spicy." in subject


def test_long_description_is_cut_at_a_word():
    """A long description is cut near MAX_DESCRIPTION_CHARS at a word boundary, with an ellipsis."""
    product = ProductInfo(title="Mug", description="<p>" + "stoneware glaze " * 100 + "</p>")
    subject = build_prompt(product, PRESETS["studio"]).splitlines()[0]
    about = subject.split("About the product: ", 1)[1]
    assert len(about) <= MAX_DESCRIPTION_CHARS
    assert about.endswith("…")
    assert about[:-1].split()[-1] in ("stoneware", "glaze")


def test_prompt_stays_bounded():
    """Huge product data cannot push the prompt near OpenAI's 32,000-character limit."""
    product = ProductInfo(title="T" * 5000, description="word " * 20000, product_type="x" * 5000,
                          vendor="v" * 5000, tags=tuple(f"tag{i}" for i in range(500)))
    assert len(build_prompt(product, PRESETS["outdoor"], text="SALE", references=15)) < 5000


def test_empty_product_still_makes_a_prompt():
    """Without product data the subject is 'the product' from the first input image."""
    prompt = build_prompt(ProductInfo(), PRESETS["studio"])
    assert prompt.startswith("Subject: the product, a product, shown in the first input image.")


def test_keep_unchanged_names_what_must_not_change():
    """The prompt says the first image is the product and lists shape, proportions, colours, label text, logo."""
    prompt = build_prompt(PRODUCT, PRESETS["studio"])
    keep = prompt[prompt.index("Keep the product unchanged"):]
    assert "first input image is the product" in keep
    for word in ("shape", "proportions", "colours", "label text", "logo"):
        assert word in keep


@pytest.mark.parametrize(
    ("references", "phrase"),
    [(1, "The second input image is style and setting references only"),
     (3, "The following 3 input images are style and setting references only")],
)
def test_references_are_style_only(references, phrase):
    """Reference images are named as style/setting references that must not lend products, text or logos."""
    prompt = build_prompt(PRODUCT, PRESETS["studio"], references=references)
    assert phrase in prompt
    assert "never copy products, people, text or logos" in prompt


def test_no_references_no_reference_line():
    """Without references the prompt does not mention them."""
    assert "References:" not in build_prompt(PRODUCT, PRESETS["studio"])


def test_text_is_quoted_verbatim_and_spelled():
    """Exact text is quoted as given, spelled letter by letter, placed as a badge away from the product."""
    prompt = build_prompt(PRODUCT, PRESETS["studio"], text="  Summer\nSALE -20%  ")
    assert '"Summer SALE -20%"' in prompt
    assert "(spelled: S u m m e r / S A L E / - 2 0 %)" in prompt
    assert "badge" in prompt and "not covering" in prompt
    assert "Add no text" not in prompt


def test_without_text_no_text_is_added():
    """Without text the prompt forbids added captions and watermarks."""
    prompt = build_prompt(PRODUCT, PRESETS["studio"])
    assert "Add no text, captions, watermarks or logos" in prompt
    assert "render exactly" not in prompt


@pytest.mark.parametrize(
    ("size", "words"),
    [((1536, 1024), "1536x1024 pixels, landscape (3:2)"),
     ((1024, 1536), "1024x1536 pixels, portrait (2:3)"),
     ((1024, 1024), "1024x1024 pixels, square (1:1)"),
     ((1920, 1088), "1920x1088 pixels, landscape (30:17)")],
)
def test_size_in_words(size, words):
    """The technical line names the frame and its aspect ratio."""
    assert describe_size(*size) == words
    preset = ScenePreset(name="custom", style="prompt", prompt="A shelf.", width=size[0], height=size[1])
    assert words in build_prompt(PRODUCT, preset)


def test_builtin_presets():
    """Five named presets, free prompts at 1536x1024 medium, each with its own lighting and style."""
    assert [preset.name for preset in BUILTIN_OPENAI_PRESETS] == [
        "kitchen-counter", "studio", "outdoor", "flat-lay", "seasonal"]
    for preset in BUILTIN_OPENAI_PRESETS:
        assert (preset.style, preset.width, preset.height, preset.quality) == ("prompt", 1536, 1024, "medium")
        assert len(preset.prompt) > 80
        assert preset.name in LOOKS
        assert preset.prompt in build_prompt(PRODUCT, preset)


def test_unknown_preset_gets_the_default_look():
    """A merchant's own preset is lit and styled by DEFAULT_LOOK."""
    preset = ScenePreset(name="my-shelf", style="prompt", prompt="On a walnut shelf.")
    assert look_for(preset) == DEFAULT_LOOK
    prompt = build_prompt(PRODUCT, preset)
    assert "Scene: On a walnut shelf." in prompt and DEFAULT_LOOK.lighting in prompt


def test_refine_prompt_keeps_everything_else():
    """A refine prompt is the instruction plus keep-everything-else and keep-the-product-unchanged."""
    prompt = build_refine_prompt("  make the background\nwarmer ", masked=True)
    assert prompt.startswith("Edit this product photograph inside the transparent area of the mask: "
                             "make the background warmer")
    assert "Keep everything else unchanged" in prompt
    assert "Keep the product unchanged" in prompt
    assert "mask" not in build_refine_prompt("brighter")
