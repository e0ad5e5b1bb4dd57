"""AssetStorage: where our rendered assets live, addressed by the SHA-256 of their bytes.

A key is `sha256/ab/cd/<64 hex>.<ext>`: the same bytes always get the same key (a re-run stores
nothing new), and the two fan-out levels keep any one directory small. A key is validated by a
regex and its path proven to be under the root before any file is touched, so a key that arrives
in a URL can never name an arbitrary path (Thumbor's file_storage maps keys to paths the same way).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import tempfile
import urllib.parse
from typing import Protocol

ALLOWED_EXTS = frozenset({"png", "webp", "jpg", "gif", "avif", "heic", "json"})
"""File extensions a stored asset may have; anything else is a caller bug or hostile input."""

FILE_MODE = 0o644
"""Stored files are world-readable so a web server running as another user can serve them."""

# The fan-out directories must be the first hex digits of the digest (the \1\2 back-references):
# a key has exactly one spelling, so it can be compared and cached as a plain string.
_KEY_RE = re.compile(
    r"sha256/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{60}\.(?:%s)" % "|".join(sorted(ALLOWED_EXTS))
)


class StorageError(RuntimeError):
    """The storage backend could not do what was asked (bad key, bad URL, disk trouble)."""


class InvalidKey(StorageError, ValueError):
    """A key that is not one of ours: malformed, or escaping the root. Never touches the disk."""


class AssetMissing(StorageError, KeyError):
    """No asset is stored under this key."""

    # KeyError's __str__ would show the message in quotes; we want it as written.
    __str__ = BaseException.__str__


class AssetStorage(Protocol):
    def put(self, data: bytes, *, ext: str) -> str:
        """Store the bytes and return their key; storing the same bytes again writes nothing."""
        ...

    def get(self, key: str) -> bytes:
        """The stored bytes; AssetMissing when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an asset is stored under the key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the asset; no error when it is already gone."""
        ...

    def open_path(self, key: str) -> pathlib.Path | None:
        """A local file holding the asset (for send_file), or None when the backend has no files."""
        ...


def content_key(data: bytes, ext: str) -> str:
    """The key for these bytes: `sha256/ab/cd/<hex digest>.<ext>`."""
    if ext not in ALLOWED_EXTS:
        raise StorageError(f"extension {ext!r} is not allowed (one of {', '.join(sorted(ALLOWED_EXTS))})")
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256/{digest[:2]}/{digest[2:4]}/{digest}.{ext}"


def write_atomic(path: pathlib.Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Write a whole file or nothing: readers see the old file or the new one, never half of one.

    The temp file is in the target's directory so os.replace is a rename within one filesystem.
    It starts with a dot so listings and validated names never mistake it for a finished file.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())  # the rename must not land on disk before the bytes do
            os.fchmod(tmp.fileno(), mode)  # mkstemp creates 0o600
        os.replace(tmp_name, path)
    except BaseException:
        # Any failure (including KeyboardInterrupt) leaves no temp file behind.
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise


class LocalStorage:
    """Assets as files under a root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Resolved once, so the containment check compares real paths (symlinks followed).
        self.root = pathlib.Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def put(self, data: bytes, *, ext: str) -> str:
        key = content_key(data, ext)
        path = self._path(key)
        if path.is_file():
            return key  # same bytes, same key: already stored
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Two writers of the same content both rename a complete file into place; either wins.
            write_atomic(path, data)
        except OSError as exc:
            raise StorageError(f"cannot store {key}: {exc}") from exc
        return key

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise AssetMissing(f"no asset stored under {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        # Empty fan-out directories are left in place: removing them would race with a put.
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    def open_path(self, key: str) -> pathlib.Path:
        """The file holding the asset; AssetMissing when absent (the same answer get() gives)."""
        path = self._path(key)
        if not path.is_file():
            raise AssetMissing(f"no asset stored under {key}")
        return path

    def _path(self, key: str) -> pathlib.Path:
        """The file for a key, after proving the key is ours and the path is under the root."""
        # fullmatch, not match with `$`: `$` would let a trailing newline through.
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise InvalidKey(f"not a storage key: {key!r}")
        # The regex already rules out `..`, `/` and `\`; resolving also catches a fan-out
        # directory that someone replaced with a symlink pointing elsewhere.
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKey(f"key {key!r} resolves outside the storage root")
        return path


def storage_from_url(url: str) -> AssetStorage:
    """The storage a CATALOG_STORAGE_URL names.

    `file://var/assets` is relative to the working directory, `file:///srv/assets` is absolute
    (percent-escapes are decoded, as in any file URL). `s3://` is reserved for a later backend.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise StorageError(f"storage URL {url!r} has no scheme (expected file://... or s3://...)")
    if scheme == "file":
        path = urllib.parse.unquote(rest)
        if not path or "\x00" in path:
            raise StorageError(f"storage URL {url!r} names no directory")
        return LocalStorage(path)
    if scheme == "s3":
        raise StorageError("S3 storage is not available yet; use a file:// storage URL for now")
    raise StorageError(f"unsupported storage URL scheme {scheme!r} in {url!r} (expected file:// or s3://)")
