"""The SceneProvider seam: every scene provider takes a SceneRequest and returns a SceneResult."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from .pricing import Calibration


class ProviderError(RuntimeError):
    """A scene could not be made. `retryable` says whether the same request may succeed later."""

    retryable = False

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class ProviderUnavailable(ProviderError):
    """Transient: timeouts, rate limits, 5xx. The job may retry."""

    retryable = True


class SceneRefused(ProviderError):
    """Permanent for this request: content policy, invalid input, budget."""


class NotSupported(SceneRefused):
    """Permanent: this provider cannot do what was asked (refine a scene, for one); the message says which can."""

    def __init__(self, message: str, *, reason: str = "not_supported") -> None:
        super().__init__(message, reason=reason)


@dataclasses.dataclass(frozen=True)
class ProductInfo:
    """What the prompt and the compositor may know about the product."""

    title: str = ""
    description: str = ""
    product_type: str = ""
    vendor: str = ""
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ScenePreset:
    """A named scene: how it looks (style + prompt), its size and quality."""

    name: str
    style: str  # compositor: studio | surface | gradient | reference; openai: free prompt
    prompt: str = ""
    width: int = 1536
    height: int = 1024
    quality: str = "medium"
    brand_color: str = "#3b6ea5"
    surface: str = "marble"  # marble | wood, for the surface style
    text: str = ""  # short exact text for the scene (a badge: "NEW", "-20%")
    text_mode: str = "overlay"  # overlay: drawn by us over the scene; model: rendered by the model
    # exact: the product's own pixels are laid back over the scene, so the model never redraws it;
    # model: the model may redraw the product too (stylised scenes), and the fidelity check decides.
    product_lock: str = "exact"


PRODUCT_LOCKS = ("exact", "model")

COMPOSITE_SOURCE = "compositeWithTrainedAlgorithmicMedia"
"""IPTC Digital Source Type of a scene a model drew around the product's own, real pixels."""
GENERATED_SOURCE = "trainedAlgorithmicMedia"
"""IPTC Digital Source Type of a scene in which the model drew the product too."""


@dataclasses.dataclass(frozen=True)
class SceneRequest:
    """One scene to make: the cutout (RGBA PNG bytes), the merchant's reference images and a preset."""

    cutout_png: bytes
    preset: ScenePreset
    product: ProductInfo = ProductInfo()
    references: tuple[bytes, ...] = ()
    shop_key: str = ""  # an opaque per-shop id (a hash), never a domain
    model: str = ""  # the provider's model for this call; "" means the provider's default
    text: str = ""  # short exact text for the scene (a badge: "NEW", "-20%")
    text_mode: str = "overlay"  # overlay: we draw it with Pillow (exact, free); model: the model renders it
    # What recent calls of this shop (and of every shop) used, so estimate_cost calibrates itself; None: the
    # provider's table alone (catalog_service/spend.py: load_calibration builds it).
    calibration: Calibration | None = None


@dataclasses.dataclass(frozen=True)
class SceneResult:
    """One made scene: encoded bytes plus what it cost."""

    data: bytes
    content_type: str
    width: int
    height: int
    preset: str
    provider: str
    model: str = ""
    cost_usd: float = 0.0
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    estimate_usd: float = 0.0  # what estimate_cost said before the call
    size: str = ""  # the WxH asked of the model ("" for a provider that asks no model)
    # Where the product stands in the scene: the box (left, top, right, bottom) into which the trimmed cutout
    # was resized, so the fidelity check compares like with like. None: the provider cannot say.
    placement: tuple[int, int, int, int] | None = None
    source_type: str = ""  # COMPOSITE_SOURCE or GENERATED_SOURCE when a generative model touched it; "" if none
    # The decoded image behind `data`, when the provider has it: the checks after the call need not decode again.
    image: Any = dataclasses.field(default=None, compare=False, repr=False)


class SceneProvider(Protocol):
    """A scene provider. Every method is present on every provider; one it cannot do raises NotSupported."""

    name: str

    def generate(self, request: SceneRequest) -> SceneResult:
        """Make one scene, or raise ProviderError."""
        ...

    def estimate_cost(self, request: SceneRequest) -> float:
        """What generate() would cost at most, in USD, before making the call (0 for free providers)."""
        ...

    def refine(
        self, *, image_png: bytes, instruction: str, mask_png: bytes | None = None, size: str = "auto",
        quality: str = "medium", model: str | None = None, shop_key: str = "", preset: str = "refine",
    ) -> SceneResult:
        """A new version of a made scene from the merchant's instruction (only the mask's transparent area
        changes, when one is given); ProviderError, or NotSupported where the provider cannot edit images."""
        ...


class UnavailableProvider:
    """Stands in for a provider that cannot be built (no key): every scene is refused with the reason."""

    name = "unavailable"

    def __init__(self, message: str, *, reason: str = "not_configured") -> None:
        self.message, self.reason = message, reason

    def estimate_cost(self, request: SceneRequest) -> float:
        return 0.0

    def generate(self, request: SceneRequest) -> SceneResult:
        raise SceneRefused(self.message, reason=self.reason)

    def refine(
        self, *, image_png: bytes, instruction: str, mask_png: bytes | None = None, size: str = "auto",
        quality: str = "medium", model: str | None = None, shop_key: str = "", preset: str = "refine",
    ) -> SceneResult:
        raise SceneRefused(self.message, reason=self.reason)
