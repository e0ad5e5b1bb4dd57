"""Shop connectors, chosen by the shop's platform from a closed registry."""

from __future__ import annotations

from ..config import Config
from ..models import Platform, Shop
from .base import PushAsset, StoreConnector


def storage_key_for(asset: PushAsset) -> str:
    """The stored file behind a pushed asset: its key is the content hash, its extension the file's."""
    ext = asset.filename.rsplit(".", 1)[-1]
    return f"sha256/{asset.key[:2]}/{asset.key[2:4]}/{asset.key}.{ext}"


def connector_for(shop: Shop, config: Config) -> StoreConnector:
    """The connector that pushes assets to this shop (read the shop's secrets inside a session)."""
    if shop.platform == Platform.GENERIC and shop.callback_url:
        from ..assets import signed_url
        from .callback import CallbackStore

        return CallbackStore(
            callback_url=shop.callback_url, secret=shop.webhook_secret or "",
            asset_url=lambda asset: signed_url(config, storage_key_for(asset)),
            allow_private=config.allow_private_urls,
        )
    if shop.platform in (Platform.FOLDER, Platform.GENERIC):
        from .folder import FolderStore

        return FolderStore(config.folder_store_dir, f"shop-{shop.id}")
    raise ValueError(f"pushing to {shop.platform.value} shops is not available yet")
