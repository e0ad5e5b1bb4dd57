"""intake.accept_delivery: one delivery, one transaction, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, select

from catalog_service.db import Database
from catalog_service.intake import ShopRef, UnknownShop, accept_delivery
from catalog_service.models import Delivery, Product, Render, SourceImage
from catalog_service.schemas import ImageRef, ProductEvent

pytestmark = pytest.mark.both_databases  # database behaviour: on PostgreSQL too

EVENT = ProductEvent(
    action="create", product_id="501", title="Linen shirt", tags=("linen",),
    images=(ImageRef(external_id="71", src="https://cdn.example.com/shirt.jpg", alt="front"),),
)


def counts(url: str) -> dict[str, int]:
    """Rows per table as a connection of its own sees them: only what was committed."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {model.__name__: connection.scalar(select(func.count()).select_from(model)) or 0
                    for model in (Delivery, Product, SourceImage, Render)}
    finally:
        engine.dispose()


@pytest.fixture
def db(app) -> Database:
    database: Database = app.extensions["catalog_db"]
    return database


def test_a_new_product_is_committed_with_its_render_recorded_on_the_delivery(db: Database, shop) -> None:
    """When accept_delivery returns, the delivery, product, image and render are committed, and the
    Delivery row names the render it made."""
    result = accept_delivery(db, ShopRef(id=shop[0]), EVENT, delivery_key="generic:d-1", topic="product.created")
    assert result.outcome == "render" and result.render_id is not None
    assert counts(db.url) == {"Delivery": 1, "Product": 1, "SourceImage": 1, "Render": 1}
    delivery = db.session().execute(select(Delivery)).scalar_one()
    assert (delivery.outcome, delivery.render_id) == ("render", result.render_id)

    again = accept_delivery(db, ShopRef(id=shop[0]), EVENT, delivery_key="generic:d-1", topic="product.created")
    assert again.outcome == "duplicate"
    assert counts(db.url) == {"Delivery": 1, "Product": 1, "SourceImage": 1, "Render": 1}


def test_a_delivery_that_fails_midway_leaves_nothing_and_its_retry_is_taken(db: Database, shop) -> None:
    """The Delivery row is written first; a failure after it (text the database cannot encode) undoes it
    with the rest, so the shop's retry of the same delivery is accepted rather than called a duplicate."""
    broken = ProductEvent(action="create", product_id="501", title="\ud800", images=EVENT.images)
    with pytest.raises(UnicodeEncodeError):
        accept_delivery(db, ShopRef(id=shop[0]), broken, delivery_key="generic:d-2", topic="product.created")
    assert counts(db.url) == {"Delivery": 0, "Product": 0, "SourceImage": 0, "Render": 0}

    retry = accept_delivery(db, ShopRef(id=shop[0]), EVENT, delivery_key="generic:d-2", topic="product.created")
    assert retry.outcome == "render"
    assert counts(db.url) == {"Delivery": 1, "Product": 1, "SourceImage": 1, "Render": 1}


def test_an_unknown_shop_raises_and_writes_nothing(db: Database, shop) -> None:
    """No shop with that id: UnknownShop (the view's 404), and no row of any kind."""
    with pytest.raises(UnknownShop):
        accept_delivery(db, ShopRef(id=shop[0] + 1000), EVENT, delivery_key="generic:d-3", topic="product.created")
    assert counts(db.url) == {"Delivery": 0, "Product": 0, "SourceImage": 0, "Render": 0}


def test_an_image_pushed_with_the_old_alt_marker_is_not_taken_for_the_merchants(db: Database, shop) -> None:
    """Our images pushed before the alt text lost its ` [cs:<key>]` tag are still ours: an update listing one
    (under a file name without our marker) records only the merchant's photo and renders nothing new."""
    first = accept_delivery(db, ShopRef(id=shop[0]), EVENT, delivery_key="generic:d-4", topic="product.created")
    assert first.outcome == "render"
    legacy = ImageRef(external_id="99", src="https://cdn.example.com/files/scene_1a2b.jpg",
                      alt="Linen shirt (scene) [cs:0f1e2d3c4b5a69788796a5b4c3d2e1f0]")
    update = ProductEvent(action="update", product_id="501", title="Linen shirt", tags=("linen",),
                          images=(*EVENT.images, legacy))
    again = accept_delivery(db, ShopRef(id=shop[0]), update, delivery_key="generic:d-5", topic="product.updated")
    assert again.outcome == "ignored"
    assert db.session().scalars(select(SourceImage.src)).all() == ["https://cdn.example.com/shirt.jpg"]
