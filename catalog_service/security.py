"""Secrets at rest and on the wire: webhook HMAC checks, encryption of stored secrets, API keys.

Signed links (downloads, sign-in) are not here: signed_links.py makes them with itsdangerous.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import MetaData, String, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

_fernet: MultiFernet | None = None


def _fernet_for(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"catalog-service/token-encryption/" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def configure(secret_key: str, fallbacks: list[str] | tuple[str, ...] = ()) -> None:
    """Derive the at-rest encryption keys from the service secret and its fallbacks. Called once per process.

    New values are encrypted with the current key; values written under a fallback key still decrypt,
    until `catalog-service secrets rotate` has re-encrypted them with the current one.
    """
    global _fernet
    _fernet = MultiFernet([_fernet_for(key) for key in (secret_key, *fallbacks)])


def rotate(token: str) -> str:
    """The stored value re-encrypted with the current key (it may have been written under a fallback)."""
    try:
        return _cipher().rotate(token.encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret cannot be decrypted with CATALOG_SECRET_KEY or its fallbacks") from None


def _cipher() -> MultiFernet:
    if _fernet is None:
        raise RuntimeError("security.configure() has not been called: no key to encrypt secrets with")
    return _fernet


def encrypt(plain: str) -> str:
    return _cipher().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret cannot be decrypted: CATALOG_SECRET_KEY has changed; "
                         "put the old key in CATALOG_SECRET_KEY_FALLBACKS") from None


class EncryptedText(TypeDecorator[str]):
    """A column whose value is Fernet-encrypted in the database and plain in Python."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else decrypt(value)


class UnreadableSecret(ValueError):
    """A stored secret that neither the current key nor any fallback decrypts."""


def rotate_stored(session: Session, metadata: MetaData) -> int:
    """Re-encrypt every stored EncryptedText value with the current key, in the caller's transaction.

    Values are read and written raw (type_coerce to String): nothing is encrypted twice. Returns how many
    values were rewritten; raises UnreadableSecret, naming the row but not the value, when one cannot be
    decrypted (the caller's rollback then leaves every value as it was).
    """
    rewritten = 0
    for table in metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        for column in (column for column in table.columns if isinstance(column.type, EncryptedText)):
            # FOR UPDATE: a token refreshed meanwhile must not be overwritten with its old value re-encrypted.
            stored = select(*keys, type_coerce(column, String)).where(column.is_not(None)).with_for_update()
            for *ids, value in session.execute(stored).all():
                try:
                    fresh = rotate(value)
                except ValueError:
                    row = ", ".join(f"{key.name}={ident}" for key, ident in zip(keys, ids, strict=True))
                    raise UnreadableSecret(
                        f"{table.name}.{column.name} ({row}) cannot be decrypted with CATALOG_SECRET_KEY or "
                        "CATALOG_SECRET_KEY_FALLBACKS: add the key it was written with to the fallbacks") from None
                where = [key == ident for key, ident in zip(keys, ids, strict=True)]
                session.execute(update(table).where(*where).values({column: type_coerce(fresh, String)}))
                rewritten += 1
    return rewritten


def hmac_sha256(secret: str | bytes, body: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).digest()


def verify_hex_signature(secret: str, body: bytes, header: str | None, prefix: str = "sha256=") -> bool:
    """Constant-time check of a `sha256=<hex>` signature header."""
    if not header or not header.startswith(prefix):
        return False
    expected = prefix + hmac_sha256(secret, body).hex()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def verify_base64_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a base64 HMAC-SHA256 header (Shopify, WooCommerce)."""
    if not header:
        return False
    expected = base64.b64encode(hmac_sha256(secret, body))
    return hmac.compare_digest(expected, header.strip().encode())


STANDARD_SECRET_PREFIX = "whsec_"


def standard_webhook(secret: str) -> Webhook:
    """The Standard Webhooks signer and verifier for a shop's webhook secret.

    A secret already in that form (`whsec_` + base64, as another platform may have generated it) is used as
    the standardwebhooks libraries read it. Any other secret's UTF-8 bytes are the key, the same key
    X-Catalog-Signature uses: its Standard Webhooks form is `whsec_` + base64 of those bytes.
    """
    if secret.startswith(STANDARD_SECRET_PREFIX):
        try:
            return Webhook(secret)
        except (ValueError, EmptyWebhookSecretError):
            pass  # not base64 after all: the text itself is the key, as for any other secret
    return Webhook(secret.encode())


def new_api_key() -> str:
    return "cs_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """API keys are stored as a SHA-256 hash only; the key itself is shown once."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def shop_key(shop_id: int, secret_key: str) -> str:
    """An opaque, stable per-shop id for outside services (never the domain)."""
    return hmac.new(secret_key.encode(), f"shop:{shop_id}".encode(), hashlib.sha256).hexdigest()[:32]
