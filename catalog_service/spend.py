"""What a shop's paid calls used, read back: the samples that calibrate the next estimates."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import UsageRecord
from .scenes.pricing import Calibration, UsageSample

CALIBRATION_ROWS = 500
"""The most recent usage records one calibration reads, for every shop and again for the shop itself: enough for
the newest CALIBRATION_MAX_SAMPLES (scenes/pricing.py) of each model, quality and size in use, and bounded."""


def load_calibration(session: Session, shop_id: int, provider: str = "openai") -> Calibration:
    """The calibration of `shop_id`'s next estimates at `provider`, from recent recorded usage.

    Output tokens come from every shop's recent calls, input image tokens from this shop's own (its references
    decide them). Calls without measured usage (no output tokens) or without a recorded size are left out.
    """
    everyone = _samples(session, provider, None)
    own = _samples(session, provider, shop_id)
    return Calibration.from_samples(everyone, own)


def _samples(session: Session, provider: str, shop_id: int | None) -> Sequence[UsageSample]:
    """UsageSamples of the newest CALIBRATION_ROWS measured calls at `provider` (of one shop, if given)."""
    query = (select(UsageRecord.model, UsageRecord.quality, UsageRecord.size, UsageRecord.output_tokens,
                    UsageRecord.input_image_tokens)
             .where(UsageRecord.provider == provider, UsageRecord.output_tokens > 0, UsageRecord.size != "")
             .order_by(UsageRecord.id.desc()).limit(CALIBRATION_ROWS))
    if shop_id is not None:
        query = query.where(UsageRecord.shop_id == shop_id)
    return [UsageSample(model=row.model, quality=row.quality, size=row.size, output_tokens=row.output_tokens,
                        input_image_tokens=row.input_image_tokens)
            for row in session.execute(query)]
