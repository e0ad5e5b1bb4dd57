"""Shopify's OAuth: the install redirect, the callback's HMAC, the code exchange, token refresh, webhooks.

No Flask here; catalog_service/shopify_install.py holds the routes. Offline tokens expire (API-NOTES):
we ask for expiring ones, keep the refresh token, and refresh before expiry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlencode

import requests

from .base import AuthRevoked, UpstreamError

TIMEOUT_S = 15.0
# Topics we subscribe every installed shop to; the privacy topics are set in the app's configuration.
WEBHOOK_TOPICS = ("PRODUCTS_CREATE", "PRODUCTS_UPDATE", "PRODUCTS_DELETE", "APP_UNINSTALLED")
MAX_CLOCK_SKEW_S = 90

_SUBSCRIBE = """
mutation Subscribe($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""


@dataclasses.dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: float | None  # unix seconds; None for a token that does not expire
    refresh_expires_at: float | None = None  # when the refresh token lapses (90 days); the merchant must then reinstall

    def stored(self) -> dict[str, float | str | None]:
        """What the shop keeps beside its access token (encrypted): the refresh token and both expiries."""
        return {"refresh_token": self.refresh_token, "expires_at": self.expires_at,
                "refresh_expires_at": self.refresh_expires_at}


def admin_url(shop: str, admin_base_url: str = "") -> str:
    """Where a shop's admin lives: https://<shop>, or one address for every shop (tests, staging)."""
    return admin_base_url.rstrip("/") if admin_base_url else f"https://{shop}"


def authorize_url(shop: str, *, client_id: str, scopes: str, redirect_uri: str, state: str,
                  admin_base_url: str = "") -> str:
    query = urlencode({"client_id": client_id, "scope": scopes, "redirect_uri": redirect_uri, "state": state})
    return f"{admin_url(shop, admin_base_url)}/admin/oauth/authorize?{query}"


def query_hmac_ok(query: Mapping[str, str], secret: str) -> bool:
    """Shopify's signature over a callback or app-launch query: every other parameter, sorted, k=v joined by &."""
    given = query.get("hmac", "")
    message = "&".join(f"{key}={value}" for key, value in sorted(query.items()) if key not in ("hmac", "signature"))
    expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    # Compared as bytes: compare_digest refuses non-ASCII text, and a query's hmac can hold anything.
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def timestamp_fresh(timestamp: str, now: float) -> bool:
    try:
        return abs(now - int(timestamp)) <= MAX_CLOCK_SKEW_S
    except ValueError:
        return False


def _token_call(shop: str, payload: dict[str, str], admin_base_url: str, now: float) -> Tokens:
    try:
        response = requests.post(f"{admin_url(shop, admin_base_url)}/admin/oauth/access_token", data=payload,
                                 headers={"Accept": "application/json"}, timeout=TIMEOUT_S)
    except requests.RequestException:
        raise UpstreamError(f"Shopify's token endpoint for {shop} could not be reached") from None
    if response.status_code in (400, 401, 403):
        raise AuthRevoked(f"Shopify refused the token request for {shop} ({response.status_code}): "
                          "install the app again")
    if response.status_code != 200:
        raise UpstreamError(f"Shopify's token endpoint answered {response.status_code}")
    try:
        body = response.json()
        access = body["access_token"]
    except (ValueError, KeyError, TypeError):
        raise UpstreamError("Shopify's token answer had no access_token") from None
    expires_in, refresh_expires_in = _seconds(body.get("expires_in")), _seconds(body.get("refresh_token_expires_in"))
    return Tokens(access_token=access, refresh_token=body.get("refresh_token"),
                  expires_at=now + expires_in if expires_in else None,
                  refresh_expires_at=now + refresh_expires_in if refresh_expires_in else None)


def _seconds(value: object) -> float | None:
    # A refresh has already used up the old refresh token: an odd expiry must not cost us the new pair.
    try:
        return float(value) if isinstance(value, (int, float, str)) else None
    except ValueError:
        return None


def exchange_code(shop: str, code: str, *, client_id: str, client_secret: str, admin_base_url: str = "",
                  now: float | None = None) -> Tokens:
    """The authorisation code for an expiring offline token and its refresh token."""
    return _token_call(shop, {"client_id": client_id, "client_secret": client_secret, "code": code, "expiring": "1"},
                       admin_base_url, time.time() if now is None else now)


def refresh(shop: str, refresh_token: str, *, client_id: str, client_secret: str, admin_base_url: str = "",
            now: float | None = None) -> Tokens:
    """A new token pair; Shopify replaces the refresh token on every use, so save both at once."""
    return _token_call(shop, {"client_id": client_id, "client_secret": client_secret,
                              "grant_type": "refresh_token", "refresh_token": refresh_token},
                       admin_base_url, time.time() if now is None else now)


def register_webhooks(shop: str, access_token: str, *, uri: str, api_version: str, admin_base_url: str = "",
                      topics: tuple[str, ...] = WEBHOOK_TOPICS) -> list[str]:
    """Subscribe the shop's product and uninstall topics to our endpoint; returns the subscription ids."""
    ids = []
    for topic in topics:
        try:
            response = requests.post(
                f"{admin_url(shop, admin_base_url)}/admin/api/{api_version}/graphql.json",
                json={"query": _SUBSCRIBE, "variables": {"topic": topic,
                                                         "webhookSubscription": {"uri": uri, "format": "JSON"}}},
                headers={"X-Shopify-Access-Token": access_token}, timeout=TIMEOUT_S)
            body = response.json()
        except (requests.RequestException, ValueError):
            raise UpstreamError(f"Shopify did not answer the webhook subscription for {topic}") from None
        result = (body.get("data") or {}).get("webhookSubscriptionCreate") or {}
        errors = body.get("errors") or result.get("userErrors") or []
        if errors or not result.get("webhookSubscription"):
            messages = "; ".join(str(e.get("message", e)) for e in errors) or "no subscription returned"
            if any("already been taken" in str(e.get("message", "")) for e in errors):
                continue  # subscribed by an earlier install
            raise UpstreamError(f"Shopify refused the {topic} webhook: {messages}")
        ids.append(result["webhookSubscription"]["id"])
    return ids
