"""Which connector pushes to a shop: chosen by the shop's platform, built from its stored credentials.

It lives outside stores/ because it reads the database (a Shopify token may be refreshed and saved on
the way); stores/ holds the connectors themselves, which know no database.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .config import Config
from .db import Database
from .models import Platform, Shop
from .signed_links import signed_url
from .stores.base import AuthRevoked, PushAsset, StoreConnector


def storage_key_for(asset: PushAsset) -> str:
    """The stored file behind a pushed asset: its key is the content hash, its extension the file's."""
    ext = asset.filename.rsplit(".", 1)[-1]
    return f"sha256/{asset.key[:2]}/{asset.key[2:4]}/{asset.key}.{ext}"


def public_url_for(config: Config) -> Callable[[PushAsset], str]:
    """A signed, expiring download link for a pushed asset, for stores that fetch it from us."""
    return lambda asset: signed_url(config, storage_key_for(asset))


def connector_for(shop: Shop, config: Config, db: Database | None = None) -> StoreConnector:
    """The connector that pushes assets to this shop (read the shop's secrets inside a session)."""
    if shop.platform == Platform.GENERIC and shop.callback_url:
        from .stores.callback import CallbackStore

        return CallbackStore(
            callback_url=shop.callback_url, secret=shop.webhook_secret or "",
            asset_url=public_url_for(config),
            allow_private=config.allow_private_urls,
        )
    if shop.platform in (Platform.FOLDER, Platform.GENERIC):
        from .stores.folder import FolderStore

        return FolderStore(config.folder_store_dir, f"shop-{shop.id}")
    if shop.platform == Platform.SHOPIFY:
        from .shop_tokens import refresher, token_for
        from .stores.shopify import ShopifyStore

        # Refreshed here when it expires soon, one worker per shop at a time (shop_tokens.py).
        token = token_for(shop, config, db)
        return ShopifyStore(shop_domain=shop.domain, access_token=token, api_version=config.shopify_api_version,
                            api_base_url=shop.api_base_url or config.shopify_admin_url or None,
                            refresh_token=refresher(db, shop.id, config, token) if db is not None else None)
    if shop.platform == Platform.WOOCOMMERCE:
        from .stores.woocommerce import WooCommerceStore

        creds = json.loads(shop.credentials or "{}")
        if not creds.get("consumer_key") or not creds.get("consumer_secret"):
            raise AuthRevoked("The shop has no WooCommerce REST keys: add them with `shops add --consumer-key ...`.")
        return WooCommerceStore(
            base_url=shop.api_base_url or f"https://{shop.domain}", consumer_key=creds["consumer_key"],
            consumer_secret=creds["consumer_secret"], wp_user=creds.get("wp_user"),
            wp_app_password=creds.get("wp_app_password"),
            public_asset_url=public_url_for(config),
        )
    raise ValueError(f"no connector for {shop.platform.value} shops")
