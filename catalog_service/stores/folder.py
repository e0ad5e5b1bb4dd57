"""FolderStore: a "shop" that is a directory, for `demo` and tests (our no-network connector).

Layout: `<root>/<shop>/<product_id>/<filename>` plus a `manifest.json` per product that records
which of our asset keys are there. The manifest is what makes pushes idempotent, as a real shop's
media list would be.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any

from catalog_service.storage import write_atomic
from catalog_service.stores.base import BaseConnector, PushAsset, PushResult, StoreError

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"

# Shop, product id and filename all come from outside (webhooks, settings), so each must be one
# plain path component. A leading letter or digit rules out "", ".", "..", hidden files, our lock
# file and write_atomic's temp files; no slash or backslash means no second component.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _safe_name(value: object, what: str) -> str:
    """The value when it is a safe single path component; StoreError (permanent) otherwise."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value):
        raise StoreError(f"unsafe {what} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


def product_folder_name(product_id: str) -> str:
    """The folder a product's files go in: its id when that is a safe name (as before), otherwise a slug of
    it plus a short hash of the whole id, so ids like `SKU 12/A` or `кружка` get a folder of their own
    instead of failing every push."""
    if _SAFE_NAME.fullmatch(product_id):
        return product_id
    slug = _UNSAFE_RUN.sub("-", product_id).strip("-._")[:48] or "product"
    if not slug[0].isalnum():
        slug = "p" + slug
    return f"{slug}-{hashlib.sha256(product_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


class FolderStore(BaseConnector):
    """Pushes assets into a local directory tree, one folder per product."""

    platform = "folder"
    can_delete = True

    def __init__(self, root: str | os.PathLike[str], shop: str) -> None:
        self.root = pathlib.Path(root).resolve()
        self.shop = _safe_name(shop, "shop")

    def push_asset(self, product_id: str, asset: PushAsset) -> PushResult:
        """Write the file and its manifest entry, once per asset key.

        A different key under a filename already in use replaces that file and its entry, like
        re-uploading a product's main image; running `demo` twice therefore stays tidy.
        """
        product_dir = self._product_dir(product_id)
        filename = _safe_name(asset.filename, "filename")
        if filename == MANIFEST_NAME:
            raise StoreError(f"filename {filename!r} is reserved for the manifest")
        product_dir.mkdir(parents=True, exist_ok=True)
        # Read-modify-write of the manifest under the lock: without it, two concurrent pushes
        # would each add their entry to the same old manifest and one entry would be lost.
        with _locked(product_dir / LOCK_NAME):
            manifest = _read_manifest(product_dir / MANIFEST_NAME, product_id)
            for entry in manifest["assets"]:
                if entry["key"] == asset.key:
                    # Already pushed (a retried job): answer as the first push did.
                    return PushResult(
                        external_id=entry["filename"],
                        url=(product_dir / entry["filename"]).as_uri(),
                        created=False,
                    )
            target = product_dir / filename
            # The file goes first, so the manifest never lists a file that is not there.
            write_atomic(target, asset.data)
            manifest["assets"] = [e for e in manifest["assets"] if e["filename"] != filename]
            manifest["assets"].append(
                {
                    "key": asset.key,
                    "kind": asset.kind,
                    "filename": filename,
                    "content_type": asset.content_type,
                    "bytes": len(asset.data),
                    "sha256": hashlib.sha256(asset.data).hexdigest(),
                    "alt": asset.alt,
                    "pushed_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                }
            )
            body = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
            write_atomic(product_dir / MANIFEST_NAME, body.encode("utf-8"))
        return PushResult(external_id=filename, url=target.as_uri(), created=True)

    def existing_assets(self, product_id: str) -> dict[str, str]:
        """Our keys already on the product -> their filenames. Empty for a product never pushed to."""
        product_dir = self._product_dir(product_id)
        # No lock needed: the manifest is replaced atomically, so a reader sees a whole version.
        manifest = _read_manifest(product_dir / MANIFEST_NAME, product_id)
        return {entry["key"]: entry["filename"] for entry in manifest["assets"]}

    def delete_asset(self, product_id: str, external_id: str) -> bool:
        """Take one of our files off the product (replace on regenerate); gone already is fine (False)."""
        product_dir = self._product_dir(product_id)
        filename = _safe_name(external_id, "filename")
        if filename == MANIFEST_NAME or not product_dir.exists():
            return False
        with _locked(product_dir / LOCK_NAME):
            manifest = _read_manifest(product_dir / MANIFEST_NAME, product_id)
            kept = [e for e in manifest["assets"] if e["filename"] != filename]
            there = len(kept) < len(manifest["assets"])
            manifest["assets"] = kept
            body = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
            write_atomic(product_dir / MANIFEST_NAME, body.encode("utf-8"))
            (product_dir / filename).unlink(missing_ok=True)
        return there

    def _product_dir(self, product_id: str) -> pathlib.Path:
        """The product's folder, proven to be under the root even if a symlink was planted."""
        if not isinstance(product_id, str) or not product_id:
            raise StoreError(f"unusable product id {product_id!r}")
        path = (self.root / self.shop / product_folder_name(product_id)).resolve()
        if not path.is_relative_to(self.root):
            raise StoreError(f"product folder for {product_id!r} resolves outside {self.root}")
        return path


@contextlib.contextmanager
def _locked(lock_path: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive flock on the file: serialises pushes across threads and processes.

    flock locks belong to the open file description, so each caller opening the file gets its
    own and threads of one process exclude each other too (POSIX fcntl locks would not).
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_manifest(path: pathlib.Path, product_id: str) -> dict[str, Any]:
    """The product's manifest, a fresh empty one when missing; StoreError when it is damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"product_id": product_id, "assets": []}
    except OSError as exc:
        raise StoreError(f"cannot read manifest {path}: {exc}") from exc
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"manifest {path} is corrupt (not JSON: {exc}); fix or delete it") from exc
    # Checked before use so a hand-edited manifest gives this message, not a KeyError later.
    assets = manifest.get("assets") if isinstance(manifest, dict) else None
    if not isinstance(assets, list) or not all(
        isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("filename"), str) for e in assets
    ):
        raise StoreError(f"manifest {path} is corrupt (expected an 'assets' list of entries); fix or delete it")
    return manifest
