"""Shop connectors, chosen by the shop's platform from a closed registry."""

from __future__ import annotations

from ..config import Config
from ..models import Platform, Shop
from .base import StoreConnector


def connector_for(shop: Shop, config: Config) -> StoreConnector:
    """The connector that pushes assets to this shop."""
    if shop.platform in (Platform.FOLDER, Platform.GENERIC):
        from .folder import FolderStore

        # Until the generic callback exists (issue 5) a generic shop's assets land in the folder store.
        return FolderStore(config.folder_store_dir, f"shop-{shop.id}")
    raise ValueError(f"pushing to {shop.platform.value} shops is not available yet")
