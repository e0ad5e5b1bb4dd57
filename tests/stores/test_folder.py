"""FolderStore: pushes into a directory tree with a per-product manifest."""

import hashlib
import json
import threading

import pytest

from catalog_service.stores.base import PushAsset, StoreError
from catalog_service.stores.folder import FolderStore, product_folder_name


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "out", "shop-1")


def make_asset(n=0, *, filename=None, data=None):
    return PushAsset(
        key=f"render-1/cutout-{n}",
        kind="cutout",
        filename=f"cutout-{n}.png" if filename is None else filename,
        content_type="image/png",
        data=data if data is not None else f"png bytes {n}".encode(),
        alt=f"Product {n}",
    )


def read_manifest(store, product_id):
    return json.loads((store.root / store.shop / product_id / "manifest.json").read_text())


def asset_files(store, product_id):
    return sorted(p.name for p in (store.root / store.shop / product_id).iterdir() if not p.name.startswith("."))


def test_push_writes_file_and_manifest_entry(store):
    """A first push writes the file and a complete manifest entry, and reports created."""
    asset = make_asset()
    result = store.push_asset("123", asset)

    path = store.root / "shop-1" / "123" / "cutout-0.png"
    assert path.read_bytes() == asset.data
    assert result.created is True
    assert result.external_id == "cutout-0.png"
    assert result.url == path.as_uri()
    manifest = read_manifest(store, "123")
    assert manifest["product_id"] == "123"
    [entry] = manifest["assets"]
    assert entry.pop("pushed_at").endswith("+00:00")
    assert entry == {
        "key": asset.key,
        "kind": "cutout",
        "filename": "cutout-0.png",
        "content_type": "image/png",
        "bytes": len(asset.data),
        "sha256": hashlib.sha256(asset.data).hexdigest(),
        "alt": "Product 0",
    }


def test_second_push_same_key_creates_nothing(store):
    """Pushing the same key again returns created=False with the same id and changes nothing."""
    first = store.push_asset("123", make_asset())
    files_before = asset_files(store, "123")
    manifest_before = read_manifest(store, "123")

    again = store.push_asset("123", make_asset())

    assert again.created is False
    assert (again.external_id, again.url) == (first.external_id, first.url)
    assert asset_files(store, "123") == files_before
    assert read_manifest(store, "123") == manifest_before
    assert len(manifest_before["assets"]) == 1


def test_concurrent_pushes_keep_every_entry(store):
    """10 threads pushing different assets to one product all end up in the manifest."""
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def work(i):
        try:
            barrier.wait()
            store.push_asset("123", make_asset(i))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    keys = {entry["key"] for entry in read_manifest(store, "123")["assets"]}
    assert keys == {f"render-1/cutout-{i}" for i in range(10)}
    assert len(asset_files(store, "123")) == 11  # ten assets and the manifest
    assert [p for p in (store.root / "shop-1" / "123").iterdir() if p.name.endswith(".tmp")] == []


HOSTILE = ["../x", "a/b", "", ".", "..", ".hidden", "a\\b", "a\x00b", "/abs", "x" * 200]


@pytest.mark.parametrize("product_id", [p for p in HOSTILE if p])
def test_unnameable_product_ids_get_a_safe_folder_of_their_own(store, product_id):
    """Product ids that are not one plain path component are stored under a derived name inside the shop's
    folder (a slug and a hash): the push works, nothing lands outside, and the manifest keeps the real id."""
    result = store.push_asset(product_id, make_asset())
    assert result.created and store.existing_assets(product_id) == {"render-1/cutout-0": "cutout-0.png"}
    (folder,) = (store.root / "shop-1").iterdir()
    assert folder.name == product_folder_name(product_id) and folder.name[0].isalnum()
    assert json.loads((folder / "manifest.json").read_text())["product_id"] == product_id
    assert store.delete_asset(product_id, "cutout-0.png") and not (folder / "cutout-0.png").exists()


def test_derived_folders_differ_for_ids_that_slug_alike(store):
    """`a/b` and `a b` make the same slug; the hash keeps their files apart. Safe ids keep their own name."""
    assert product_folder_name("a/b") != product_folder_name("a b")
    assert product_folder_name("123") == "123" and product_folder_name("SKU-12.A") == "SKU-12.A"


def test_an_empty_product_id_is_refused(store):
    """An empty id names nothing: StoreError, nothing written."""
    with pytest.raises(StoreError, match="product id"):
        store.push_asset("", make_asset())
    assert not store.root.exists()


@pytest.mark.parametrize("filename", HOSTILE + ["manifest.json"])
def test_hostile_filenames_rejected(store, filename):
    """Filenames that are not one plain component, or would clobber the manifest, raise StoreError."""
    with pytest.raises(StoreError, match="filename"):
        store.push_asset("123", make_asset(filename=filename))
    assert not (store.root / "shop-1" / "123" / "manifest.json").exists()


@pytest.mark.parametrize("shop", HOSTILE)
def test_hostile_shop_rejected(tmp_path, shop):
    """A shop name that is not one plain path component is refused at construction."""
    with pytest.raises(StoreError, match="shop"):
        FolderStore(tmp_path, shop)


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[]", b'{"assets": {}}', b'{"assets": [{"key": 1}]}'])
def test_corrupt_manifest_raises_store_error(store, body):
    """A damaged manifest gives a clear StoreError instead of a crash or a silent reset."""
    product_dir = store.root / "shop-1" / "123"
    product_dir.mkdir(parents=True)
    (product_dir / "manifest.json").write_bytes(body)
    with pytest.raises(StoreError, match="manifest .* is corrupt"):
        store.push_asset("123", make_asset())
    with pytest.raises(StoreError, match="manifest .* is corrupt"):
        store.existing_assets("123")
    assert (product_dir / "manifest.json").read_bytes() == body


def test_existing_assets_reflects_pushes(store):
    """existing_assets maps each pushed key to its external id, per product."""
    assert store.existing_assets("123") == {}
    a = store.push_asset("123", make_asset(1))
    b = store.push_asset("123", make_asset(2))
    store.push_asset("456", make_asset(3))
    assert store.existing_assets("123") == {
        "render-1/cutout-1": a.external_id,
        "render-1/cutout-2": b.external_id,
    }
    assert store.existing_assets("456") == {"render-1/cutout-3": "cutout-3.png"}


def test_new_key_under_same_filename_replaces_it(store):
    """A different key pushed under a used filename replaces the file and its manifest entry."""
    store.push_asset("123", make_asset(1, filename="main.png", data=b"old"))
    result = store.push_asset("123", make_asset(2, filename="main.png", data=b"new"))
    assert result.created is True
    assert (store.root / "shop-1" / "123" / "main.png").read_bytes() == b"new"
    assert store.existing_assets("123") == {"render-1/cutout-2": "main.png"}
