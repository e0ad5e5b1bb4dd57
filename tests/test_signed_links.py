"""Signed links: one itsdangerous serializer, a salt per purpose, expiry in the payload, rotated keys still verify."""

from __future__ import annotations

import time

import pytest

from catalog_service.config import Config
from catalog_service.signed_links import (
    ASSET_LINK,
    SIGN_IN,
    BadLink,
    ExpiredLink,
    asset_token,
    check_asset_token,
    sign,
    unsign,
)

NOW = 1_800_000_000.0


def config(secret_key: str = "key-b", fallbacks: str = "") -> Config:
    return Config.load({"secret_key": secret_key, "secret_key_fallbacks": fallbacks}, environ={})


def test_a_token_carries_its_payload_until_it_expires() -> None:
    """The payload comes back as signed up to its expiry second; one second later it is ExpiredLink."""
    token = sign(config(), SIGN_IN, {"shop": 7}, int(NOW) + 60)
    assert unsign(config(), SIGN_IN, token, now=NOW + 60) == {"shop": 7, "exp": int(NOW) + 60}
    with pytest.raises(ExpiredLink):
        unsign(config(), SIGN_IN, token, now=NOW + 61)


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    """The salt separates purposes: a sign-in token is no asset link, and the other way round."""
    token = sign(config(), SIGN_IN, {"key": "shops/1/a.png"}, int(NOW) + 60)
    with pytest.raises(BadLink) as refused:
        unsign(config(), ASSET_LINK, token, now=NOW)
    assert not isinstance(refused.value, ExpiredLink)
    with pytest.raises(BadLink):
        check_asset_token(config(), "shops/1/a.png", token, now=NOW)


def test_a_token_made_before_a_rotation_verifies_with_the_old_key_as_fallback() -> None:
    """Signed under key A: refused under B alone, accepted under B with A as a fallback; new ones use B."""
    old = asset_token(config("key-a"), "shops/1/a.png", int(NOW) + 60)
    with pytest.raises(BadLink):
        check_asset_token(config("key-b"), "shops/1/a.png", old, now=NOW)
    check_asset_token(config("key-b", fallbacks="key-z, key-a"), "shops/1/a.png", old, now=NOW)
    new = asset_token(config("key-b", fallbacks="key-a"), "shops/1/a.png", int(NOW) + 60)
    check_asset_token(config("key-b"), "shops/1/a.png", new, now=NOW)
    with pytest.raises(BadLink):
        check_asset_token(config("key-a"), "shops/1/a.png", new, now=NOW)


@pytest.mark.parametrize("token", ["", "garbage", "a.b", "eyJrZXkiOiJ4In0.AAAA"])
def test_malformed_tokens_are_bad_links(token: str) -> None:
    """Nothing that is not our signature gets past unsign, and nothing crashes."""
    with pytest.raises(BadLink):
        unsign(config(), ASSET_LINK, token, now=NOW)


def test_an_asset_token_is_bound_to_its_key() -> None:
    """A genuine download token for one asset does not open another."""
    token = asset_token(config(), "shops/1/a.png", int(NOW) + 60)
    check_asset_token(config(), "shops/1/a.png", token, now=NOW)
    with pytest.raises(BadLink, match="another asset"):
        check_asset_token(config(), "shops/1/b.png", token, now=NOW)


def test_a_service_without_a_secret_key_signs_nothing() -> None:
    """An empty key would sign links anyone can forge: refuse instead."""
    with pytest.raises(RuntimeError, match="secret key"):
        sign(Config.load({"secret_key": ""}, environ={}), SIGN_IN, {}, int(time.time()))


def test_the_same_link_signed_twice_is_the_same_url() -> None:
    """No signing time in the token: a page's hour-stable links stay byte-identical, so browsers cache them."""
    first = asset_token(config(), "shops/1/a.png", int(NOW) + 3600)
    assert asset_token(config(), "shops/1/a.png", int(NOW) + 3600) == first
    assert asset_token(config(), "shops/1/a.png", int(NOW) + 7200) != first
