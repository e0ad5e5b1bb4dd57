"""Config: every setting from CATALOG_* variables, strictly parsed, checked at startup."""

from __future__ import annotations

import pytest

from catalog_service.config import Config, ConfigError, parse_bool


def test_defaults_work_on_a_fresh_machine() -> None:
    """With no environment at all the service runs offline with SQLite, local files and the compositor."""
    config = Config.load(environ={})
    assert config.database_url == "sqlite:///var/catalog.db"
    assert config.storage_url == "file://var/assets"
    assert config.scene_provider == "compositor"
    assert config.cutout_model == "u2netp"
    assert config.allow_private_urls is False


def test_environment_is_parsed_with_types() -> None:
    """Numbers and booleans arrive as numbers and booleans."""
    config = Config.load(environ={
        "CATALOG_MAX_PIXELS": "20_000_000", "CATALOG_ALLOW_PRIVATE_URLS": "yes",
        "CATALOG_DATABASE_URL": "postgresql+psycopg://db/catalog", "CATALOG_FETCH_READ_TIMEOUT_S": "2.5",
    })
    assert config.max_pixels == 20_000_000
    assert config.allow_private_urls is True
    assert config.database_url == "postgresql+psycopg://db/catalog"
    assert config.fetch_read_timeout_s == 2.5


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CATALOG_ALLOW_PRIVATE_URLS": "perhaps"}, "CATALOG_ALLOW_PRIVATE_URLS"),
        ({"CATALOG_MAX_PIXELS": "lots"}, "CATALOG_MAX_PIXELS"),
        ({"CATALOG_SCENE_PROVIDER": "dall-e"}, "CATALOG_SCENE_PROVIDER"),
        ({"CATALOG_STORAGE_URL": "ftp://x"}, "CATALOG_STORAGE_URL"),
        ({"CATALOG_OPENAI_MODEL": "dall-e-9"}, "CATALOG_OPENAI_MODEL"),
        ({"CATALOG_OPENAI_PRICES": "{not json"}, "CATALOG_OPENAI_PRICES"),
    ],
)
def test_bad_values_stop_startup_with_the_variable_named(environ: dict[str, str], message: str) -> None:
    """A typo in a setting is an error at startup, naming the variable, never a silent default."""
    with pytest.raises(ConfigError, match=message):
        Config.load(environ=environ)


def test_unknown_override_is_refused() -> None:
    """A test or caller cannot set a setting that does not exist."""
    with pytest.raises(ConfigError, match="unknown setting"):
        Config.load({"databse_url": "sqlite://"}, environ={})


def test_openai_key_selects_the_openai_provider_unless_told_otherwise() -> None:
    """With an OpenAI key the default provider is OpenAI; CATALOG_SCENE_PROVIDER still wins."""
    assert Config.load(environ={"OPENAI_API_KEY": "sk-test"}).scene_provider == "openai"
    chosen = Config.load(environ={"OPENAI_API_KEY": "sk-test", "CATALOG_SCENE_PROVIDER": "compositor"})
    assert chosen.scene_provider == "compositor"


def test_secret_key_is_generated_once_and_reused(tmp_path) -> None:
    """Without CATALOG_SECRET_KEY a secret is written to var/ on first run and read back after."""
    first = Config.load({"var_dir": str(tmp_path)}, environ={}).ensure_secret_key()
    second = Config.load({"var_dir": str(tmp_path)}, environ={}).ensure_secret_key()
    assert first == second and len(first) >= 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("word", "value"), [("true", True), ("On", True), ("0", False), ("no", False)])
def test_parse_bool_accepts_the_usual_words(word: str, value: bool) -> None:
    """Booleans accept the usual spellings."""
    assert parse_bool(word) is value
