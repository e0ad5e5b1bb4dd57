"""LocalStorage and storage_from_url, on real files under tmp_path."""

import hashlib
import os
import re
import threading

import pytest

from catalog_service.storage import (
    AssetMissing,
    InvalidKey,
    LocalStorage,
    StorageError,
    content_key,
    storage_from_url,
)

KEY_SHAPE = re.compile(r"sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z]+")


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "assets")


def all_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_round_trip(storage):
    """put returns a key under which get, exists and open_path find the same bytes."""
    data = b"\x89PNG fake image bytes"
    key = storage.put(data, ext="png")
    assert storage.get(key) == data
    assert storage.exists(key)
    path = storage.open_path(key)
    assert path.read_bytes() == data
    assert path.is_relative_to(storage.root)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_key_is_sha256_with_fan_out():
    """content_key is sha256/<2 hex>/<2 hex>/<digest>.<ext>."""
    digest = hashlib.sha256(b"abc").hexdigest()
    assert content_key(b"abc", "webp") == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}.webp"


def test_same_bytes_same_key_written_once(storage):
    """Storing the same bytes twice gives one key and leaves the first file untouched."""
    key = storage.put(b"same", ext="png")
    path = storage.open_path(key)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # an old mtime a rewrite would change
    before = path.stat()
    assert storage.put(b"same", ext="png") == key
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(all_files(storage.root)) == 1


def test_different_bytes_different_keys(storage):
    """Different content (or extension) gives different keys, both readable."""
    a = storage.put(b"one", ext="png")
    b = storage.put(b"two", ext="png")
    c = storage.put(b"one", ext="webp")
    assert len({a, b, c}) == 3
    assert (storage.get(a), storage.get(b), storage.get(c)) == (b"one", b"two", b"one")


GOOD_HEX = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "sha256/../../../etc/passwd",
        f"sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/..\\{GOOD_HEX}.png",
        f"sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/{GOOD_HEX}.png\x00",
        f"sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/{GOOD_HEX}.png\n",
        f"/sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/{GOOD_HEX}.png",
        f"sha256/00/00/{GOOD_HEX}.png",  # fan-out does not match the digest
        f"sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/{GOOD_HEX.upper()}.png",
        f"sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/{GOOD_HEX}.exe",
        f"sha256/{GOOD_HEX[:2]}/{GOOD_HEX[2:4]}/{GOOD_HEX[:-1]}.png",
        "",
        None,
    ],
)
def test_malformed_and_traversal_keys_rejected(storage, key):
    """Keys that are not exactly ours raise StorageError from every method, before any I/O."""
    for call in (storage.get, storage.exists, storage.delete, storage.open_path):
        with pytest.raises(InvalidKey):
            call(key)
    assert not storage.root.exists()  # nothing was created on the way


def test_symlinked_fan_out_outside_root_rejected(storage, tmp_path):
    """A fan-out directory replaced by a symlink out of the root is refused."""
    key = content_key(b"data", "png")
    outside = tmp_path / "outside"
    outside.mkdir()
    first = storage.root / key.split("/")[0] / key.split("/")[1]
    first.parent.mkdir(parents=True)
    first.symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="outside"):
        storage.put(b"data", ext="png")
    with pytest.raises(StorageError, match="outside"):
        storage.get(key)
    assert list(outside.rglob("*")) == []


@pytest.mark.parametrize("ext", ["exe", "", "PNG", ".png", "png/../x", "jpeg", "svg"])
def test_unknown_ext_rejected(storage, ext):
    """Only the allow-listed extensions can be stored."""
    with pytest.raises(StorageError, match="extension"):
        storage.put(b"data", ext=ext)


def test_get_missing_raises_asset_missing(storage):
    """A well-formed key with nothing stored raises AssetMissing, a KeyError too."""
    key = content_key(b"never stored", "png")
    with pytest.raises(AssetMissing) as info:
        storage.get(key)
    assert isinstance(info.value, KeyError)
    assert str(info.value) == f"no asset stored under {key}"
    with pytest.raises(AssetMissing):
        storage.open_path(key)
    assert not storage.exists(key)


def test_delete_is_idempotent(storage):
    """delete removes the asset, and deleting again (or never stored) is not an error."""
    key = storage.put(b"bye", ext="json")
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)
    storage.delete(content_key(b"never stored", "png"))


def test_concurrent_puts_same_and_different_content(storage):
    """8 threads storing shared and own content at once all succeed, intact, with no temp files."""
    shared = os.urandom(256 * 1024)
    own = [os.urandom(64 * 1024) + bytes([i]) for i in range(8)]
    barrier = threading.Barrier(8)
    keys: dict[int, tuple[str, str]] = {}
    errors: list[BaseException] = []

    def work(i):
        try:
            barrier.wait()
            keys[i] = (storage.put(shared, ext="png"), storage.put(own[i], ext="webp"))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len({shared_key for shared_key, _ in keys.values()}) == 1
    for i, (shared_key, own_key) in keys.items():
        assert storage.get(shared_key) == shared
        assert storage.get(own_key) == own[i]
    files = all_files(storage.root)
    assert len(files) == 9
    assert all(KEY_SHAPE.fullmatch(p.relative_to(storage.root).as_posix()) for p in files)


def test_storage_from_url_relative(tmp_path, monkeypatch):
    """file://var/assets is relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    storage = storage_from_url("file://var/assets")
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "var" / "assets").resolve()
    key = storage.put(b"rel", ext="png")
    assert (tmp_path / "var" / "assets" / key).read_bytes() == b"rel"


def test_storage_from_url_absolute(tmp_path):
    """file:///abs/path is absolute, with percent-escapes decoded."""
    storage = storage_from_url(f"file://{tmp_path}/my%20assets")
    assert storage.root == (tmp_path / "my assets").resolve()
    key = storage.put(b"abs", ext="png")
    assert (tmp_path / "my assets" / key).read_bytes() == b"abs"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "no valid bucket"),
        ("ftp://host/dir", "unsupported"),
        ("file://", "names no directory"),
        ("var/assets", "no scheme"),
    ],
)
def test_storage_from_url_rejects(url, message):
    """S3 (not yet), unknown schemes and empty paths raise StorageError."""
    with pytest.raises(StorageError, match=message):
        storage_from_url(url)
