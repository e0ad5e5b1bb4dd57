"""Signed, expiring, single-use sign-in links for a shop's merchant pages. No Flask here.

A link names the shop by its id and its uid, so it never opens a later shop that got the same id; a spent
link is recorded in the database (spent_tokens), so neither a Redis flush nor a restart makes it work again.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from urllib.parse import urlencode

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .config import Config
from .models import Shop, SpentToken
from .signed_links import SIGN_IN, BadLink, ExpiredLink, sign, unsign

SIGNIN_PATH = "/signin"
"""Where a link lands; web/signin.py serves it."""


class LoginLinkError(ValueError):
    """A sign-in link that cannot be used; the message tells the merchant what to do."""


class LinkInvalid(LoginLinkError):
    pass


class LinkMalformed(LinkInvalid):
    """Not even shaped like a link of ours (characters no token of ours has): a bad request rather than a
    wrong signature."""


class LinkShopGone(LoginLinkError):
    pass


class LinkExpired(LoginLinkError):
    pass


class LinkUsed(LoginLinkError):
    pass


# What our tokens are made of (itsdangerous' URL-safe base64 and its separator). Anything else is refused before
# any decoding: base64 decoders skip characters outside their alphabet, so a token with Unicode digits added
# would otherwise still verify.
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]+")


@dataclasses.dataclass(frozen=True)
class LoginLink:
    url: str
    expires_at: int  # unix seconds


def make_token(config: Config, shop: Shop, *, ttl_s: int | None = None, now: float | None = None) -> tuple[str, int]:
    """A signed token for the shop, with a nonce that makes it single-use, and its expiry time."""
    lifetime = config.login_link_ttl_s if ttl_s is None else ttl_s
    expires_at = int((time.time() if now is None else now) + lifetime)
    payload = {"shop": shop.id, "uid": shop.uid, "nonce": secrets.token_urlsafe(18)}
    return sign(config, SIGN_IN, payload, expires_at), expires_at


def make_link(config: Config, shop: Shop, *, ttl_s: int | None = None, now: float | None = None) -> LoginLink:
    """An absolute sign-in URL for the shop (lifetime: CATALOG_LOGIN_LINK_TTL_S unless `ttl_s` is given)."""
    token, expires_at = make_token(config, shop, ttl_s=ttl_s, now=now)
    return LoginLink(f"{config.public_url.rstrip('/')}{SIGNIN_PATH}?{urlencode({'token': token})}", expires_at)


def spend(session: Session, token_id: str, expires_at: int, *, now: float | None = None) -> bool:
    """Record a one-time token as used, in the caller's transaction; False when it already was.

    The record is kept until `expires_at` (after which the token's own expiry refuses it); older records are
    deleted here, so the table holds only the tokens that could still be presented.
    """
    now = time.time() if now is None else now
    session.execute(delete(SpentToken).where(SpentToken.expires_at < int(now)))
    dialect_insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = session.scalar(dialect_insert(SpentToken).values(id=token_id, expires_at=int(expires_at))
                              .on_conflict_do_nothing(index_elements=["id"]).returning(SpentToken.id))
    return inserted is not None


def _verified(session: Session, config: Config, token: str, now: float) -> tuple[Shop, str, int]:
    """The active shop a valid token names, its spend id and how long that is kept; a LoginLinkError otherwise."""
    if token and not _TOKEN_CHARACTERS.fullmatch(token):
        raise LinkMalformed("This sign-in link is not valid: it holds characters no link of ours has. "
                            "Copy the whole link exactly, or ask for a new one.")
    try:
        payload = unsign(config, SIGN_IN, token, now=now)
    except ExpiredLink:
        raise LinkExpired("This sign-in link has expired. Ask for a new one.") from None
    except BadLink:
        raise LinkInvalid("This sign-in link is not valid or not complete. Copy the whole link, "
                          "or ask for a new one.") from None
    shop_id, uid, nonce = payload.get("shop"), payload.get("uid"), payload.get("nonce")
    if not isinstance(shop_id, int) or not isinstance(uid, str) or not isinstance(nonce, str) or not nonce:
        raise LinkInvalid("This sign-in link is not valid. Ask for a new one.")
    shop = session.get(Shop, shop_id)
    if shop is None or shop.uid != uid or not shop.active:
        raise LinkShopGone("This shop is no longer active here. Install the app again, then ask for a new link.")
    return shop, f"{SIGN_IN}:{nonce}", payload["exp"] + 1


_USED = "This sign-in link was already used. Each link works once: ask for a new one."


def check(session: Session, config: Config, token: str, *, now: float | None = None) -> Shop:
    """The shop a token would sign in to, without spending it (what opening the link shows); raises a
    LoginLinkError, LinkUsed included, as redeem() would."""
    shop, token_id, _keep_until = _verified(session, config, token, time.time() if now is None else now)
    if session.get(SpentToken, token_id) is not None:
        raise LinkUsed(_USED)
    return shop


def redeem(session: Session, config: Config, token: str, *, now: float | None = None) -> Shop:
    """The active shop of a valid token, which is then spent in the caller's transaction; raises a
    LoginLinkError otherwise."""
    now = time.time() if now is None else now
    shop, token_id, keep_until = _verified(session, config, token, now)
    if not spend(session, token_id, keep_until, now=now):
        raise LinkUsed(_USED)
    return shop
