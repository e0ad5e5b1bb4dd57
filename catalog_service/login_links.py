"""Signed, expiring, single-use sign-in links for a shop's merchant pages. No Flask here."""

from __future__ import annotations

import dataclasses
import secrets
import time
from urllib.parse import urlencode

from redis import Redis

from .config import Config
from .signed_links import SIGN_IN, BadLink, ExpiredLink, sign, unsign

SIGNIN_PATH = "/signin"
"""Where a link lands; web/signin.py serves it."""


class LoginLinkError(ValueError):
    """A sign-in link that cannot be used; the message tells the merchant what to do."""


class LinkInvalid(LoginLinkError):
    pass


class LinkExpired(LoginLinkError):
    pass


class LinkUsed(LoginLinkError):
    pass


@dataclasses.dataclass(frozen=True)
class LoginLink:
    url: str
    expires_at: int  # unix seconds


def make_token(config: Config, shop_id: int, *, ttl_s: int | None = None, now: float | None = None) -> tuple[str, int]:
    """A signed token for the shop, with a nonce that makes it single-use, and its expiry time."""
    lifetime = config.login_link_ttl_s if ttl_s is None else ttl_s
    expires_at = int((time.time() if now is None else now) + lifetime)
    token = sign(config, SIGN_IN, {"shop": shop_id, "nonce": secrets.token_urlsafe(18)}, expires_at)
    return token, expires_at


def make_link(config: Config, shop_id: int, *, ttl_s: int | None = None, now: float | None = None) -> LoginLink:
    """An absolute sign-in URL for the shop (lifetime: CATALOG_LOGIN_LINK_TTL_S unless `ttl_s` is given)."""
    token, expires_at = make_token(config, shop_id, ttl_s=ttl_s, now=now)
    return LoginLink(f"{config.public_url.rstrip('/')}{SIGNIN_PATH}?{urlencode({'token': token})}", expires_at)


def redeem(redis: Redis, config: Config, token: str, *, now: float | None = None) -> int:
    """The shop id of a valid token, which is then spent; raises a LoginLinkError otherwise."""
    now = time.time() if now is None else now
    try:
        payload = unsign(config, SIGN_IN, token, now=now)
    except ExpiredLink:
        raise LinkExpired("This sign-in link has expired. Ask for a new one.") from None
    except BadLink:
        raise LinkInvalid("This sign-in link is not valid or not complete. Copy the whole link, "
                          "or ask for a new one.") from None
    shop_id, nonce = payload.get("shop"), payload.get("nonce")
    if not isinstance(shop_id, int) or not isinstance(nonce, str) or not nonce:
        raise LinkInvalid("This sign-in link is not valid. Ask for a new one.")
    # The nonce is remembered until the link would have expired anyway: after that the expiry refuses it.
    ttl = max(1, int(payload["exp"] - now) + 1)
    if not redis.set(f"login-link:used:{nonce}", shop_id, nx=True, ex=ttl):
        raise LinkUsed("This sign-in link was already used. Each link works once: ask for a new one.")
    return shop_id
