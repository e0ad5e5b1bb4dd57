"""Exact text drawn over a finished scene."""

from __future__ import annotations

import numpy as np
from PIL import Image

from catalog_service.imaging.overlay import BADGE_FILL, draw_badge


def test_badge_sits_in_the_top_left_corner_and_leaves_the_middle_alone() -> None:
    """The badge's colour appears near the corner, and the centre of the scene is untouched."""
    scene = Image.new("RGB", (1536, 1024), (240, 240, 236))
    out = np.asarray(draw_badge(scene, "-20%")).astype(int)
    badge = np.all(np.abs(out - BADGE_FILL) < 10, axis=2)
    ys, xs = np.nonzero(badge)
    assert xs.min() < 100 and ys.min() < 100 and xs.max() < 768 and ys.max() < 300
    assert (out[400:600, 600:900] == (240, 240, 236)).all()
    assert (out[badge.nonzero()[0].min():ys.max(), xs.min():xs.max()] == 255).any()  # white letters inside


def test_badge_scales_with_the_image_and_blank_text_draws_nothing() -> None:
    """A bigger scene gets a bigger badge; whitespace-only text leaves the image as it was."""
    def badge_width(size: tuple[int, int]) -> int:
        out = np.asarray(draw_badge(Image.new("RGB", size, (0, 0, 0)), "NEW")).astype(int)
        xs = np.nonzero(np.all(np.abs(out - BADGE_FILL) < 10, axis=2))[1]
        return int(xs.max() - xs.min())

    assert badge_width((2048, 2048)) > 1.8 * badge_width((1024, 1024))
    scene = Image.new("RGB", (200, 100), (1, 2, 3))
    assert draw_badge(scene, "   ") is scene
