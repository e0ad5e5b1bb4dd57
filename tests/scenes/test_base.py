"""The provider seam: refine is on every provider; one that cannot edit images refuses with a typed error."""

from __future__ import annotations

import pytest

from catalog_service.scenes.base import NotSupported, SceneRefused, UnavailableProvider
from catalog_service.scenes.compositor import CompositorProvider


def test_compositor_refuses_to_refine_naming_the_provider_that_can() -> None:
    """The compositor cannot follow an instruction: NotSupported (permanent) that says to choose OpenAI."""
    with pytest.raises(NotSupported, match="OpenAI provider") as raised:
        CompositorProvider().refine(image_png=b"", instruction="warmer light")
    assert raised.value.reason == "not_supported" and raised.value.retryable is False


def test_unavailable_provider_refuses_to_refine_with_its_own_reason() -> None:
    """A provider that could not be built says why, for refinements as for scenes."""
    with pytest.raises(SceneRefused, match="no key") as raised:
        UnavailableProvider("no key", reason="not_configured").refine(image_png=b"", instruction="x")
    assert raised.value.reason == "not_configured"
