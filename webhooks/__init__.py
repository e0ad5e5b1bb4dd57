"""Inbound webhooks: one module per platform, all on this blueprint."""

from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

from . import generic, shopify, woocommerce  # noqa: E402,F401  (each registers its routes on bp)
