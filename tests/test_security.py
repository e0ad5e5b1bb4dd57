"""Stored secrets under MultiFernet: key rotation with fallbacks, and `catalog-service secrets rotate`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import String, create_engine, select, type_coerce

from catalog_service import services
from catalog_service.cli import main
from catalog_service.config import Config
from catalog_service.models import Shop
from catalog_service.shops import create_shop

KEY_A, KEY_B, KEY_C = "secret-key-a", "secret-key-b", "secret-key-c"
COLUMNS = (Shop.__table__.c.webhook_secret, Shop.__table__.c.access_token, Shop.__table__.c.credentials)


@pytest.fixture
def saved_under_a(app_config, redis) -> dict[str, object]:
    """A shop whose three encrypted columns were written under key A; returns the settings it was made with."""
    settings = {**app_config, "secret_key": KEY_A}
    svc = services.build(Config.load(settings, environ={}))
    try:
        with svc.db.transaction() as session:
            create_shop(session, platform="generic", domain="shop.example.com", webhook_secret="whsec-1",
                        access_token="token-1", credentials={"consumer_key": "ck-1"})
    finally:
        svc.close()
    return settings


def raw_values(database_url: str) -> list[str]:
    """The encrypted columns as stored, not decrypted."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(select(*(type_coerce(column, String) for column in COLUMNS))).one()
    finally:
        engine.dispose()
    return list(row)


def read_secrets(settings: dict[str, object], secret_key: str, fallbacks: str = "") -> tuple[str | None, ...]:
    """The shop's secrets as a process started with this key and these fallbacks reads them."""
    svc = services.build(Config.load({**settings, "secret_key": secret_key, "secret_key_fallbacks": fallbacks},
                                     environ={}))
    try:
        with svc.db.transaction() as session:
            shop = session.scalars(select(Shop)).one()
            return shop.webhook_secret, shop.access_token, shop.credentials
    finally:
        svc.close()


def rotate(monkeypatch, settings: dict[str, object], secret_key: str, fallbacks: str = ""):
    """`catalog-service secrets rotate` as an operator runs it, with this key and these fallbacks."""
    for name, var in (("var_dir", "CATALOG_VAR_DIR"), ("database_url", "CATALOG_DATABASE_URL"),
                      ("redis_url", "CATALOG_REDIS_URL"), ("storage_url", "CATALOG_STORAGE_URL")):
        monkeypatch.setenv(var, str(settings[name]))
    monkeypatch.setenv("CATALOG_SECRET_KEY", secret_key)
    monkeypatch.setenv("CATALOG_SECRET_KEY_FALLBACKS", fallbacks)
    monkeypatch.setenv("CATALOG_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("CATALOG_SCENE_PROVIDER", "compositor")
    return CliRunner().invoke(main, ["secrets", "rotate"])


EXPECTED = ("whsec-1", "token-1", json.dumps({"consumer_key": "ck-1"}))


def test_rotate_moves_every_stored_secret_to_the_new_key(saved_under_a, monkeypatch) -> None:
    """Key B with A as fallback reads; after `secrets rotate`, B alone reads and every stored value changed."""
    database_url = str(saved_under_a["database_url"])
    before = raw_values(database_url)
    assert read_secrets(saved_under_a, KEY_B, fallbacks=KEY_A) == EXPECTED
    result = rotate(monkeypatch, saved_under_a, KEY_B, fallbacks=KEY_A)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 3 stored secret(s)" in result.output
    after = raw_values(database_url)
    assert all(new != old for new, old in zip(after, before, strict=True))
    assert not any("whsec-1" in value or "token-1" in value for value in after)
    assert read_secrets(saved_under_a, KEY_B) == EXPECTED


def test_without_rotation_the_old_key_is_still_needed(saved_under_a) -> None:
    """Key B alone cannot read what A wrote: a clear error naming the fix, not a crash or garbage."""
    with pytest.raises(ValueError, match="CATALOG_SECRET_KEY_FALLBACKS"):
        read_secrets(saved_under_a, KEY_B)


def test_rotate_refuses_a_value_under_an_unknown_key_and_changes_nothing(saved_under_a, monkeypatch) -> None:
    """Key C with fallback B cannot read what A wrote: exit 1 naming the row, no secret shown, nothing rewritten."""
    before = raw_values(str(saved_under_a["database_url"]))
    result = rotate(monkeypatch, saved_under_a, KEY_C, fallbacks=KEY_B)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a ClickException, no traceback
    assert "shops.webhook_secret (id=1) cannot be decrypted" in result.output
    assert "Nothing was changed" in result.output
    assert "whsec-1" not in result.output and KEY_A not in result.output
    assert raw_values(str(saved_under_a["database_url"])) == before
    assert read_secrets(saved_under_a, KEY_A) == EXPECTED


def test_rotate_with_nothing_stored_says_so(app_config, redis, monkeypatch) -> None:
    """An empty database rotates nothing and says 0."""
    result = rotate(monkeypatch, app_config, KEY_B)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 0 stored secret(s)" in result.output
