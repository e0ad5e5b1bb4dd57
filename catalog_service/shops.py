"""Creating shops: the one place a shop's API key and webhook secret are made."""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Platform, Shop
from .schemas import default_settings
from .security import hash_api_key, new_api_key, new_webhook_secret

_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")
SHOPIFY_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")


class ShopExists(ValueError):
    pass


def create_shop(
    session: Session, *, platform: str, domain: str, name: str = "", webhook_secret: str | None = None,
    access_token: str | None = None, api_base_url: str | None = None, callback_url: str | None = None,
    credentials: dict[str, str] | None = None,
) -> tuple[Shop, str, str]:
    """A new shop with default settings. Returns it with its API key and webhook secret, shown once."""
    domain = domain.strip().lower()
    if not _DOMAIN.match(domain) or len(domain) > 255:
        raise ValueError(f"{domain!r} is not a domain name")
    kind = Platform(platform)
    if kind == Platform.SHOPIFY and not SHOPIFY_DOMAIN.match(domain):
        raise ValueError(f"{domain!r} is not a Shopify shop domain (name.myshopify.com)")
    for url in (api_base_url, callback_url):
        if url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
            raise ValueError(f"{url!r} is not an http(s) URL")
    if session.scalar(select(Shop).where(Shop.platform == kind, Shop.domain == domain)) is not None:
        raise ShopExists(f"a {platform} shop for {domain} already exists")
    api_key, secret = new_api_key(), webhook_secret or new_webhook_secret()
    shop = Shop(platform=kind, domain=domain, name=name or domain, api_key_hash=hash_api_key(api_key),
                webhook_secret=secret, access_token=access_token, api_base_url=api_base_url,
                callback_url=callback_url,
                credentials=json.dumps(credentials) if credentials else None,
                settings=default_settings())
    session.add(shop)
    session.flush()
    return shop, api_key, secret
