"""AssetStorage: where our rendered assets live, addressed by the SHA-256 of their bytes.

A key is `sha256/ab/cd/<64 hex>.<ext>`: the same bytes always get the same key (a re-run stores
nothing new), and the two fan-out levels keep any one directory small. A key is validated by a
regex and its path proven to be under the root before any file is touched, so a key that arrives
in a URL can never name an arbitrary path (Thumbor's file_storage maps keys to paths the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
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


CONTENT_TYPES = {
    "png": "image/png",
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "avif": "image/avif",
    "heic": "image/heic",
    "json": "application/json",
}
"""The Content-Type an object is stored with, by extension (every one of ALLOWED_EXTS)."""

S3_CONNECT_TIMEOUT = 5  # seconds
S3_READ_TIMEOUT = 30  # seconds
# botocore's `max_attempts` counts retries after the first try: at most 4 requests per call,
# with "standard" mode's jittered exponential backoff (at most 1, 2, 4 s) between them.
S3_MAX_ATTEMPTS = 3

# Loose on purpose: S3-compatible stores accept more than AWS's rules; this only keeps a URL's
# credentials (`user:pass@`), query or stray slashes from being taken for a bucket name.
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_PREFIX_SEGMENT_RE = re.compile(r"[A-Za-z0-9._=+-]+")

# Error codes meaning "no such object": S3 answers GetObject with NoSuchKey, HEAD with a bare 404.
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _checked_key(key: str) -> str:
    """The key itself, once proven to be one of ours (the regex LocalStorage uses)."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise InvalidKey(f"not a storage key: {key!r}")
    return key


class S3Storage:
    """Assets as objects in an S3-compatible bucket, at `<prefix>/<key>`.

    Keys are the same content-addressed keys as LocalStorage's, validated by the same regex
    before any request is made. Every call has connect/read timeouts and bounded retries.
    Without `client`, one is built by boto3, which reads the endpoint, region and credentials from
    the standard AWS environment variables and config files unless `endpoint_url`/`region` are
    given. A `client` passed in is used as is (its own timeouts and retries apply).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client=None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket):
            raise StorageError(f"not a bucket name: {bucket!r}")
        prefix = prefix.strip("/")
        if prefix and not all(
            _PREFIX_SEGMENT_RE.fullmatch(seg) and seg not in (".", "..") for seg in prefix.split("/")
        ):
            raise StorageError(f"not a usable key prefix: {prefix!r}")
        if client is not None and (endpoint_url is not None or region is not None):
            raise TypeError("pass either client or endpoint_url/region, not both")
        self.bucket = bucket
        self.prefix = prefix
        self._client = client if client is not None else self._make_client(endpoint_url, region)

    @staticmethod
    def _make_client(endpoint_url: str | None, region: str | None):
        # Imported here so that processes using LocalStorage never load boto3.
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise StorageError("S3 storage needs boto3 (pip install boto3)") from exc
        config = Config(
            connect_timeout=S3_CONNECT_TIMEOUT,
            read_timeout=S3_READ_TIMEOUT,
            retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        )
        try:
            # A session of our own: boto3's default session is module-global state.
            return boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        except Exception as exc:  # botocore raises ValueError and its own errors for a bad setup
            raise StorageError(f"cannot set up S3 client: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        where = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"S3Storage('s3://{where}')"

    def put(self, data: bytes, *, ext: str) -> str:
        key = content_key(data, ext)
        if self.exists(key):
            return key  # same bytes, same key: already stored
        with self._errors("store", key):
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._object_key(key),
                Body=data,
                ContentType=CONTENT_TYPES.get(ext, "application/octet-stream"),
            )
        return key

    def get(self, key: str) -> bytes:
        name = self._object_key(key)
        with self._errors("read", key, missing_ok=False):
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            with response["Body"] as body:
                return body.read()

    def exists(self, key: str) -> bool:
        name = self._object_key(key)
        try:
            with self._errors("look up", key, missing_ok=False):
                self._client.head_object(Bucket=self.bucket, Key=name)
        except AssetMissing:
            return False
        return True

    def delete(self, key: str) -> None:
        name = self._object_key(key)
        # S3 answers 204 for a missing object; some compatible stores say NoSuchKey instead.
        with self._errors("delete", key, missing_ok=True):
            self._client.delete_object(Bucket=self.bucket, Key=name)

    def open_path(self, key: str) -> None:
        """Always None: objects are not local files (serve them through get())."""
        _checked_key(key)
        return None

    def _object_key(self, key: str) -> str:
        key = _checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, verb: str, key: str, *, missing_ok: bool = False) -> Iterator[None]:
        """botocore's errors as ours: AssetMissing for a missing object, StorageError otherwise.

        Messages carry the error code and the server's message, never the request or credentials.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{self._object_key(key)}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.get("Code") or status or "unknown")
            if code in _MISSING_CODES:
                if missing_ok:
                    return
                raise AssetMissing(f"no asset stored under {key}") from None
            message = error.get("Message") or "no message"
            raise StorageError(f"cannot {verb} {where}: {code} (HTTP {status}): {message}") from exc
        except BotoCoreError as exc:
            # Connection refused, timeouts after the retries, missing credentials, bad stream.
            raise StorageError(f"cannot {verb} {where}: {type(exc).__name__}: {exc}") from exc


def storage_from_url(url: str) -> AssetStorage:
    """The storage a CATALOG_STORAGE_URL names.

    `file://var/assets` is relative to the working directory, `file:///srv/assets` is absolute
    (percent-escapes are decoded, as in any file URL). `s3://bucket/some/prefix` is an S3Storage;
    its endpoint, region and credentials come from the standard AWS environment variables
    (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, ...),
    which boto3 reads itself.
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
        bucket, _, prefix = rest.partition("/")
        # No credentials, query or fragment in the URL: boto3 takes those from the environment.
        if not _BUCKET_RE.fullmatch(bucket):
            # The URL is not echoed: a mistaken `s3://key:secret@bucket` must not reach a log.
            raise StorageError("s3:// storage URL names no valid bucket (expected s3://bucket/prefix)")
        return S3Storage(bucket, urllib.parse.unquote(prefix))
    raise StorageError(f"unsupported storage URL scheme {scheme!r} in {url!r} (expected file:// or s3://)")
