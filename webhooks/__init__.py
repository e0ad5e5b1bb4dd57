"""Inbound webhooks: one module per platform, all on one blueprint (common.bp)."""

from . import generic, shopify, woocommerce
from .common import bp

__all__ = ["bp", "generic", "shopify", "woocommerce"]
