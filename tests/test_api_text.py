"""Text the database cannot hold (a lone surrogate, NUL) is refused with 400 at every API entry, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog_service.models import Asset, AssetKind, Product, ReferenceImage, Render, RenderStatus, Shop, SourceImage

FIXTURES = Path(__file__).parent / "fixtures"
LONE = "\\ud800"  # the JSON escape: a client's JSON encoder writes a lone surrogate this way
NUL = "\\u0000"


def post_json(client, path: str, key: str, raw: str, method: str = "post"):  # type: ignore[no-untyped-def]
    return getattr(client, method)(path, data=raw.encode(), content_type="application/json",
                                   headers={"Authorization": f"Bearer {key}"})


def count(app, model: type) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return app.extensions["catalog_db"].session().scalar(select(func.count()).select_from(model)) or 0


def settings_of(app, shop_id: int) -> dict:  # type: ignore[no-untyped-def,type-arg]
    with app.app_context():
        return dict(app.extensions["catalog_db"].session().get(Shop, shop_id).settings)


@pytest.mark.parametrize("bad", [LONE, NUL])
@pytest.mark.parametrize("field", ["alt_template", "presets"])
def test_settings_put_refuses_unstorable_text(app, client, shop, bad: str, field: str) -> None:
    """A lone surrogate or NUL in a settings value (nested ones too) is a 400 naming the field; nothing saved."""
    shop_id, key, _ = shop
    before = settings_of(app, shop_id)
    value = f'"x{bad} {{title}}"' if field == "alt_template" else f'[{{"name": "mine", "prompt": "a{bad}"}}]'
    response = post_json(client, f"/api/v1/shops/{shop_id}/settings", key, f'{{"{field}": {value}}}', "put")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert field in response.get_json()["error"]["fields"]
    assert settings_of(app, shop_id) == before


def test_reference_image_json_name_with_a_lone_surrogate_is_400(app, client, shop, image_server) -> None:
    """`{"url", "name"}` with a surrogate in the name: 400 naming `name`, no row (it was a 500)."""
    shop_id, key, _ = shop
    src = image_server.serve("/r.jpg", (FIXTURES / "rocket.jpg").read_bytes(), content_type="image/jpeg")
    raw = json.dumps({"url": src, "name": "kitchen"}).replace("kitchen", f"kitchen{LONE}")
    response = post_json(client, f"/api/v1/shops/{shop_id}/reference-images", key, raw)
    assert response.status_code == 400 and "name" in response.get_json()["error"]["fields"]
    assert count(app, ReferenceImage) == 0


def test_reference_image_multipart_name_cannot_carry_a_surrogate(app, client, shop) -> None:
    """A multipart `name` holding a surrogate's bytes (ED A0 80) is stored as replacement characters, never
    as a surrogate; a NUL in it is refused with 400."""
    shop_id, key, _ = shop
    photo = (FIXTURES / "rocket.jpg").read_bytes()

    def send(name: bytes):  # type: ignore[no-untyped-def]
        body = (b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\n' + name + b'\r\n'
                b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n" + photo + b"\r\n--B--\r\n")
        return client.post(f"/api/v1/shops/{shop_id}/reference-images", data=body,
                           content_type="multipart/form-data; boundary=B", headers={"Authorization": f"Bearer {key}"})

    stored = send(b"kitchen\xed\xa0\x80")
    assert stored.status_code == 201 and stored.get_json()["name"] == "kitchen\ufffd\ufffd\ufffd"
    refused = send(b"kitchen\x00")
    assert refused.status_code == 400 and "name" in refused.get_json()["error"]["fields"]
    assert count(app, ReferenceImage) == 1


def add_product(app, shop_id: int) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id="101", title="Mug")
            session.add(product)
            session.flush()
            session.add(SourceImage(shop_id=shop_id, product_id=product.id, external_id="0",
                                    src="https://cdn.example.com/101.jpg", position=0))


@pytest.mark.parametrize("bad", [LONE, NUL])
def test_regenerate_prompt_with_unstorable_text_is_400(app, client, shop, redis, bad: str) -> None:
    """A one-off prompt with a surrogate or NUL: 400 naming `prompt`; no render, nothing queued."""
    shop_id, key, _ = shop
    add_product(app, shop_id)
    response = post_json(client, f"/api/v1/shops/{shop_id}/products/101/regenerate", key,
                         f'{{"prompt": "warmer{bad}"}}')
    assert response.status_code == 400 and "prompt" in response.get_json()["error"]["fields"]
    assert count(app, Render) == 0
    assert redis.keys("rq:queue:*") == []


def test_refine_instruction_with_a_lone_surrogate_is_400(app, client, shop) -> None:
    """A refinement instruction with a surrogate: 400 naming `instruction`; no render is made."""
    shop_id, key, _ = shop
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id="1")
            session.add(product)
            session.flush()
            render = Render(shop_id=shop_id, product_id=product.id, status=RenderStatus.SUCCEEDED)
            session.add(render)
            session.flush()
            asset = Asset(shop_id=shop_id, render_id=render.id, kind=AssetKind.SCENE, preset="studio",
                          storage_key="k/x.png", content_type="image/png", width=64, height=48, bytes=10)
            session.add(asset)
            session.flush()
            asset_id = asset.id
    response = post_json(client, f"/api/v1/assets/{asset_id}/refine", key, f'{{"instruction": "warmer{LONE}"}}')
    assert response.status_code == 400 and "instruction" in response.get_json()["error"]["fields"]
    assert count(app, Render) == 1
