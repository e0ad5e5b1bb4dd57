"""Signed, expiring, single-use sign-in links for a shop's merchant pages. No Flask here."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

from redis import Redis

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


def _signature(secret_key: str, shop_id: int, expires_at: int, nonce: str) -> str:
    message = f"login:{shop_id}:{expires_at}:{nonce}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def make_token(secret_key: str, shop_id: int, *, ttl_s: int, now: float | None = None) -> tuple[str, int]:
    """A token `<shop>.<expires>.<nonce>.<sig>` and its expiry time."""
    expires_at = int((time.time() if now is None else now) + ttl_s)
    nonce = secrets.token_urlsafe(18)
    return f"{shop_id}.{expires_at}.{nonce}.{_signature(secret_key, shop_id, expires_at, nonce)}", expires_at


def make_link(public_url: str, secret_key: str, shop_id: int, *, ttl_s: int, now: float | None = None) -> LoginLink:
    """An absolute sign-in URL for the shop."""
    token, expires_at = make_token(secret_key, shop_id, ttl_s=ttl_s, now=now)
    return LoginLink(f"{public_url.rstrip('/')}{SIGNIN_PATH}?{urlencode({'token': token})}", expires_at)


def redeem(redis: Redis, secret_key: str, token: str, *, now: float | None = None) -> int:
    """The shop id of a valid token, which is then spent; raises a LoginLinkError otherwise."""
    now = time.time() if now is None else now
    parts = token.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2]:
        raise LinkInvalid("This sign-in link is not complete. Copy the whole link, or ask for a new one.")
    shop_id, expires_at, nonce, given = int(parts[0]), int(parts[1]), parts[2], parts[3]
    if not hmac.compare_digest(_signature(secret_key, shop_id, expires_at, nonce).encode(), given.encode()):
        raise LinkInvalid("This sign-in link is not valid. Ask for a new one.")
    if expires_at < now:
        raise LinkExpired("This sign-in link has expired. Ask for a new one.")
    # The nonce is remembered until the link would have expired anyway: after that the expiry refuses it.
    ttl = max(1, int(expires_at - now) + 1)
    if not redis.set(f"login-link:used:{nonce}", shop_id, nx=True, ex=ttl):
        raise LinkUsed("This sign-in link was already used. Each link works once: ask for a new one.")
    return shop_id
