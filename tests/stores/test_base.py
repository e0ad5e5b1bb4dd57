"""The connector seam's optional abilities: declared by flags, and a missing one refuses with a typed error."""

from __future__ import annotations

import pytest

from catalog_service.stores.base import NotSupported, PushAsset, asset_filename
from catalog_service.stores.callback import CallbackStore
from catalog_service.stores.folder import FolderStore


def asset(key: str = "0123456789abcdef") -> PushAsset:
    return PushAsset(key=key, kind="cutout", filename=asset_filename("7", "cutout", "", key, "png"),
                     content_type="image/png", data=b"\x89PNG fake")


def test_callback_pushes_together_and_refuses_to_delete_permanently() -> None:
    """The callback announces a render at once and cannot take an image off: NotSupported, not retried."""
    store = CallbackStore(callback_url="http://127.0.0.1:9/hook", secret="s", asset_url=lambda a: "")
    assert (store.pushes_together, store.can_delete) == (True, False)
    with pytest.raises(NotSupported, match="remove it in the shop's admin") as raised:
        store.delete_asset("7", "0123456789abcdef")
    assert raised.value.retryable is False
    store.close()  # holds nothing; closing is always allowed


def test_folder_deletes_and_says_whether_the_file_was_there(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """delete_asset takes our file off (True); a second delete finds nothing (False)."""
    store = FolderStore(tmp_path, "shop")
    assert (store.pushes_together, store.can_delete) == (False, True)
    (result,) = store.push_all("7", [asset()])
    assert store.delete_asset("7", result.external_id) is True
    assert store.delete_asset("7", result.external_id) is False
    assert store.existing_assets("7") == {}
