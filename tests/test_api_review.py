"""Review at catalog scale on the JSON API: push now in review mode, bulk approve and reject, product search."""

from __future__ import annotations

from test_api_regenerate import (
    add_product,
    another_shop,
    bearer,
    configure,
    held_render,
    manifest_kinds,
    queued_job_ids,
)

from catalog_service.api import MAX_PRODUCT_RESULTS
from catalog_service.manual import MAX_BULK_ASSETS
from catalog_service.models import Asset, Product, PushStatus
from support import run_jobs


def set_push_status(app, asset_id: int, status: PushStatus) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Asset, asset_id).push_status = status


def push_statuses(client, key: str, render_id: int) -> dict[int, str]:  # type: ignore[no-untyped-def]
    render = client.get(f"/api/v1/renders/{render_id}", headers=bearer(key)).get_json()
    return {asset["id"]: asset["push_status"] for asset in render["assets"]}


# --- push now -------------------------------------------------------------------------------------------


def test_push_now_in_review_mode_asks_before_sending_unapproved_images(app, client, shop, redis, tmp_path) -> None:
    """Review mode: "push now" on a render with only held images sends nothing and says to approve first."""
    shop_id, key, _ = shop
    configure(app, shop_id, publish_mode="review")
    render_id, asset_ids = held_render(app, shop_id)
    response = client.post(f"/api/v1/renders/{render_id}/push", headers=bearer(key))
    assert response.status_code == 409, response.get_json()
    assert "wait for your review" in response.get_json()["error"]["message"]
    assert queued_job_ids(redis) == []
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == []
    assert set(push_statuses(client, key, render_id).values()) == {"held"}


def test_push_now_with_approve_held_sends_them_all(app, client, shop, redis, tmp_path) -> None:
    """Review mode: the merchant who says `approve_held` gets every held image approved and pushed."""
    shop_id, key, _ = shop
    configure(app, shop_id, publish_mode="review")
    render_id, asset_ids = held_render(app, shop_id)
    response = client.post(f"/api/v1/renders/{render_id}/push", json={"approve_held": True}, headers=bearer(key))
    assert response.status_code == 202 and (response.get_json()["assets"], response.get_json()["held"]) == (2, 0)
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["cutout", "scene"]


def test_push_now_in_review_mode_resends_failed_images_and_keeps_held_ones(app, client, shop, redis,
                                                                          tmp_path) -> None:
    """Review mode: a failed (approved) image is sent again, the held one keeps waiting and the answer counts it."""
    shop_id, key, _ = shop
    configure(app, shop_id, publish_mode="review")
    render_id, (cutout_id, scene_id) = held_render(app, shop_id)
    set_push_status(app, scene_id, PushStatus.FAILED)
    response = client.post(f"/api/v1/renders/{render_id}/push", headers=bearer(key))
    assert response.status_code == 202 and (response.get_json()["assets"], response.get_json()["held"]) == (1, 1)
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["scene"]
    assert push_statuses(client, key, render_id) == {cutout_id: "held", scene_id: "pushed"}


def test_push_now_in_auto_mode_sends_held_images(app, client, shop, redis, tmp_path) -> None:
    """Auto mode (say, switched from review): held images go to the shop on "push now" without asking."""
    shop_id, key, _ = shop
    render_id, _ = held_render(app, shop_id)
    response = client.post(f"/api/v1/renders/{render_id}/push", headers=bearer(key))
    assert response.status_code == 202 and response.get_json()["assets"] == 2
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["cutout", "scene"]


def test_push_now_refuses_a_bad_body(app, client, shop) -> None:
    """An unknown key or a non-boolean `approve_held` is a 400 naming the field."""
    shop_id, key, _ = shop
    render_id, _ = held_render(app, shop_id)
    for body, field in (({"approve": True}, "approve"), ({"approve_held": "maybe"}, "approve_held")):
        response = client.post(f"/api/v1/renders/{render_id}/push", json=body, headers=bearer(key))
        assert response.status_code == 400 and field in response.get_json()["error"]["fields"]


# --- bulk approve and reject ----------------------------------------------------------------------------


def test_bulk_approve_pushes_every_approved_asset_once_per_render(app, client, shop, redis, tmp_path) -> None:
    """Approving the assets of two renders queues one push per render; each image reaches its product."""
    shop_id, key, _ = shop
    configure(app, shop_id, publish_mode="review")
    first, first_assets = held_render(app, shop_id, product="55")
    second, second_assets = held_render(app, shop_id, product="56")
    response = client.post(f"/api/v1/shops/{shop_id}/assets/approve", headers=bearer(key),
                           json={"asset_ids": first_assets + second_assets[:1]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["done"], body["failed"]) == (3, 0)
    assert [result["push_status"] for result in body["assets"]] == ["pending"] * 3
    assert sorted(queued_job_ids(redis)) == sorted([f"push-{first}", f"push-{second}"])
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["cutout", "scene"]
    assert manifest_kinds(tmp_path, "56") == ["cutout"]
    assert push_statuses(client, key, second)[second_assets[1]] == "held"


def test_bulk_approve_answers_for_each_id_and_never_confirms_another_shops(app, client, shop, redis) -> None:
    """Another shop's asset and an unknown id get the same 404 result; a pushed one a 409; the rest go on."""
    shop_id, key, _ = shop
    _, (theirs, _) = held_render(app, another_shop(app), product="77")
    render_id, (mine, pushed) = held_render(app, shop_id)
    set_push_status(app, pushed, PushStatus.PUSHED)
    unknown = theirs + 1000
    response = client.post(f"/api/v1/shops/{shop_id}/assets/approve", headers=bearer(key),
                           json={"asset_ids": [theirs, mine, unknown, pushed, mine]})
    body = response.get_json()
    assert response.status_code == 200 and (body["done"], body["failed"]) == (1, 3)
    results = {result["asset_id"]: result for result in body["assets"]}
    assert list(results) == [theirs, mine, unknown, pushed]  # the order given, each id once
    assert results[theirs]["error"] == {"code": 404, "message": f"No asset {theirs} in this shop."}
    assert results[unknown]["error"]["message"] == f"No asset {unknown} in this shop."
    assert results[pushed]["error"]["code"] == 409 and "already on the shop" in results[pushed]["error"]["message"]
    assert results[mine] == {"asset_id": mine, "push_status": "pending"}
    assert queued_job_ids(redis) == [f"push-{render_id}"]
    with app.app_context():
        assert app.extensions["catalog_db"].session().get(Asset, theirs).push_status == PushStatus.HELD


def test_bulk_reject_keeps_held_images_off_and_takes_pushed_ones_down(app, client, shop, redis, tmp_path) -> None:
    """A held asset is rejected at once; one on the shop is taken off by a job, then rejected."""
    shop_id, key, _ = shop
    render_id, (cutout_id, scene_id) = held_render(app, shop_id)
    assert client.post(f"/api/v1/assets/{scene_id}/approve", headers=bearer(key)).status_code == 202
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == ["scene"]
    response = client.post(f"/api/v1/shops/{shop_id}/assets/reject", headers=bearer(key),
                           json={"asset_ids": [cutout_id, scene_id]})
    assert response.status_code == 200
    assert [r["push_status"] for r in response.get_json()["assets"]] == ["rejected", "removing"]
    assert queued_job_ids(redis) == [f"takedown-{scene_id}"]
    run_jobs(app, redis)
    assert manifest_kinds(tmp_path, "55") == []
    assert push_statuses(client, key, render_id) == {cutout_id: "rejected", scene_id: "rejected"}


def test_bulk_review_refuses_bad_bodies_and_other_shops(app, client, shop, redis) -> None:
    """No ids, too many, not integers, or extra keys: 400 naming the field; another shop's URL: 403."""
    shop_id, key, _ = shop
    bad = (({}, "asset_ids"), ({"asset_ids": []}, "asset_ids"),
           ({"asset_ids": list(range(1, MAX_BULK_ASSETS + 2))}, "asset_ids"), ({"asset_ids": ["1"]}, "asset_ids"),
           ({"asset_ids": [1], "force": True}, "force"))
    other_id = another_shop(app)
    for action in ("approve", "reject"):
        for body, field in bad:
            response = client.post(f"/api/v1/shops/{shop_id}/assets/{action}", json=body, headers=bearer(key))
            assert response.status_code == 400 and field in response.get_json()["error"]["fields"], (action, body)
        other = client.post(f"/api/v1/shops/{other_id}/assets/{action}", json={"asset_ids": [1]},
                            headers=bearer(key))
        assert other.status_code == 403
    assert queued_job_ids(redis) == []


def test_render_history_filters_by_push_status(app, client, shop) -> None:
    """`push_status=held` lists only the renders with an image waiting for review."""
    shop_id, key, _ = shop
    waiting, _ = held_render(app, shop_id, product="55")
    done, done_assets = held_render(app, shop_id, product="56")
    for asset_id in done_assets:
        set_push_status(app, asset_id, PushStatus.PUSHED)
    listing = client.get(f"/api/v1/shops/{shop_id}/renders", query_string={"push_status": "held"},
                         headers=bearer(key)).get_json()
    assert [render["id"] for render in listing["renders"]] == [waiting]
    pushed = client.get(f"/api/v1/shops/{shop_id}/renders", query_string={"push_status": "pushed"},
                        headers=bearer(key)).get_json()
    assert [render["id"] for render in pushed["renders"]] == [done]
    bad = client.get(f"/api/v1/shops/{shop_id}/renders", query_string={"push_status": "sent"}, headers=bearer(key))
    assert bad.status_code == 400 and "push_status" in bad.get_json()["error"]["fields"]


# --- product search -------------------------------------------------------------------------------------


def test_product_search_finds_by_title_or_id_in_a_capped_page(app, client, shop) -> None:
    """Titles match case-insensitively anywhere, ids by their start; a page is capped and says when there is more."""
    shop_id, key, _ = shop
    for number in range(MAX_PRODUCT_RESULTS + 5):
        add_product(app, shop_id, f"p{number}", title=f"Plain shirt {number}")
    add_product(app, shop_id, "9001", title="Blue Ceramic Mug")
    add_product(app, shop_id, "9002", title="100% cotton tote")
    found = client.get(f"/api/v1/shops/{shop_id}/products", query_string={"q": "ceramic"}, headers=bearer(key))
    assert found.status_code == 200
    assert found.get_json() == {"products": [{"id": "9001", "title": "Blue Ceramic Mug",
                                              "image": "https://cdn.example.com/9001-0.jpg"}], "more": False}
    by_id = client.get(f"/api/v1/shops/{shop_id}/products", query_string={"q": "900"}, headers=bearer(key))
    assert sorted(p["id"] for p in by_id.get_json()["products"]) == ["9001", "9002"]
    percent = client.get(f"/api/v1/shops/{shop_id}/products", query_string={"q": "0%"}, headers=bearer(key))
    assert [p["id"] for p in percent.get_json()["products"]] == ["9002"]  # % is a character, not a wildcard
    page = client.get(f"/api/v1/shops/{shop_id}/products", query_string={"q": "shirt", "limit": MAX_PRODUCT_RESULTS},
                      headers=bearer(key)).get_json()
    assert len(page["products"]) == MAX_PRODUCT_RESULTS and page["more"] is True
    default = client.get(f"/api/v1/shops/{shop_id}/products", headers=bearer(key)).get_json()
    assert len(default["products"]) == 20 and default["more"] is True
    too_many = client.get(f"/api/v1/shops/{shop_id}/products", query_string={"limit": MAX_PRODUCT_RESULTS + 1},
                          headers=bearer(key))
    assert too_many.status_code == 400 and "limit" in too_many.get_json()["error"]["fields"]


def test_product_search_leaves_out_deleted_products_and_other_shops(app, client, shop) -> None:
    """A product deleted in the shop and another shop's products are never offered."""
    shop_id, key, _ = shop
    add_product(app, shop_id, "1", title="Mug kept")
    gone = add_product(app, shop_id, "2", title="Mug deleted")
    add_product(app, another_shop(app), "3", title="Mug of another shop")
    with app.app_context():
        with app.extensions["catalog_db"].transaction() as session:
            session.get(Product, gone).deleted = True
    found = client.get(f"/api/v1/shops/{shop_id}/products", query_string={"q": "mug"}, headers=bearer(key))
    assert [p["id"] for p in found.get_json()["products"]] == ["1"]


def test_the_openapi_document_describes_the_review_routes(client) -> None:
    """Bulk review, product search and the push body are in the document with the schemas that check them."""
    document = client.get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    bulk = document["paths"]["/shops/{shop_id}/assets/approve"]["post"]
    assert bulk["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BulkReview"}
    assert schemas["BulkReview"]["properties"]["asset_ids"]["maxItems"] == MAX_BULK_ASSETS
    assert "post" in document["paths"]["/shops/{shop_id}/assets/reject"]
    search = document["paths"]["/shops/{shop_id}/products"]["get"]["parameters"]
    limit = next(p for p in search if p["name"] == "limit")
    assert limit["schema"]["maximum"] == MAX_PRODUCT_RESULTS
    push = document["paths"]["/renders/{render_id}/push"]["post"]
    assert set(schemas["Push"]["properties"]) == {"approve_held"} and "409" in push["responses"]
