"""intake's single-statement path for new products, as PostgreSQL plans it."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects import postgresql

from catalog_service.db import Database
from catalog_service.intake import _new_product_statement
from catalog_service.models import Delivery, Shop, utcnow


@pytest.mark.parametrize("by_domain", [True, False], ids=["by-domain", "by-id"])
def test_a_plan_cached_on_small_tables_still_probes_indexes(postgres_url: str, by_domain: bool) -> None:
    """psycopg prepares the statement after five runs and PostgreSQL may keep one generic plan per connection,
    made while the tables were small. On the intake pool that plan must still probe the indexes: a scan of
    the deliveries made every webhook slower than the one before."""
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        # A brand-new shop with its first deliveries, analysed: tables this small read cheaper whole.
        shops, deliveries = Shop.__table__, Delivery.__table__
        shop_id = connection.execute(shops.insert().values(
            platform="shopify", domain="small.myshopify.com", api_key_hash="0" * 64, name="", settings={},
            active=True, created_at=utcnow(), updated_at=utcnow()).returning(shops.c.id)).scalar()
        connection.execute(deliveries.insert(), [
            {"shop_id": shop_id, "platform": "shopify", "delivery_key": f"shopify:{n}", "topic": "products/create",
             "outcome": "ignored", "received_at": utcnow()} for n in range(3)])
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()

    compiled = _new_product_statement(by_domain=by_domain).compile(
        dialect=postgresql.dialect(paramstyle="numeric_dollar"))
    db = Database(postgres_url)
    try:
        with db.autocommit() as connection:
            connection.execute("SET plan_cache_mode = force_generic_plan")
            connection.execute(f"PREPARE intake_new_product AS {compiled}")
            nulls = ", ".join(["NULL"] * len(compiled.positiontup or ()))
            plan = "\n".join(row[0] for row in connection.execute(f"EXPLAIN EXECUTE intake_new_product({nulls})"))
            connection.execute("DEALLOCATE intake_new_product")
            connection.execute("RESET plan_cache_mode")
    finally:
        db.dispose()
    assert "Seq Scan" not in plan, plan
    assert "using uq_deliveries_shop_key on deliveries" in plan, plan
