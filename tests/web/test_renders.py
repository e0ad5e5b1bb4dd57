"""The render gallery's first paint and its card fragment: thumbnails, words for statuses and errors, scoping."""

from __future__ import annotations

import io
import re

from PIL import Image

from catalog_service.models import Asset, AssetKind, Product, PushStatus, Render, RenderStatus, SourceImage
from catalog_service.shops import create_shop


def png(size: tuple[int, int] = (80, 60)) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((10, 120, 200, 255), (10, 10, size[0] - 10, size[1] - 10))
    image.save(out, "PNG")
    return out.getvalue()


def make_render(app, shop_id: int, *, status: RenderStatus = RenderStatus.SUCCEEDED, held: bool = False,  # type: ignore[no-untyped-def]
                errors: list | None = None, last_error: str | None = None, external_id: str = "101") -> int:  # type: ignore[type-arg]
    with app.app_context():
        storage = app.extensions["catalog"].storage
        with app.extensions["catalog_db"].transaction() as session:
            product = Product(shop_id=shop_id, external_id=external_id, title="Blue mug")
            session.add(product)
            session.flush()
            session.add(SourceImage(shop_id=shop_id, product_id=product.id, src="https://cdn.example.com/mug.jpg"))
            render = Render(shop_id=shop_id, product_id=product.id, status=status, errors=errors or [],
                            last_error=last_error, trigger="manual")
            session.add(render)
            session.flush()
            if status.is_finished and status != RenderStatus.FAILED:
                for kind, preset, cost in ((AssetKind.CUTOUT, "", 0.0), (AssetKind.SCENE, "studio", 0.042)):
                    session.add(Asset(shop_id=shop_id, render_id=render.id, kind=kind, preset=preset,
                                      storage_key=storage.put(png(), ext="png"), content_type="image/png", width=80,
                                      height=60, bytes=100, cost_usd=cost,
                                      push_status=PushStatus.HELD if held else PushStatus.PUSHED))
            return render.id


def test_the_gallery_shows_thumbnails_status_cost_and_review_buttons(app, merchant) -> None:
    """Original, cutout and scene thumbnails (signed, loadable), words for the status, the cost, approve/reject."""
    render_id = make_render(app, merchant.id, held=True)
    html = merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True)
    card = html[html.index(f'id="render-{render_id}"'):]
    assert "Blue mug" in card and "Made; waiting for your review" in card and "cost $0.04" in card
    assert 'src="https://cdn.example.com/mug.jpg"' in card and "Original" in card
    thumbs = re.findall(r'<img src="(/shops/\d+/thumbs/asset/\d+\.webp\?v=\w+)" alt="([^"]+)"', card)
    assert [alt for _src, alt in thumbs] == ["Cutout", "Scene: studio"]
    for src, _alt in thumbs:
        response = merchant.get(src)
        assert response.status_code == 200 and response.mimetype == "image/webp"
        assert "immutable" in response.headers["Cache-Control"]
        with Image.open(io.BytesIO(response.data)) as preview:
            assert preview.mode == "RGBA"  # the cutout's transparency survives
    full = re.findall(r'<a href="(/assets/[^"]+)"', card)
    assert len(full) == 2
    response = merchant.get(full[0].replace("&amp;", "&"))
    response.close()
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert card.count('data-asset-action="approve"') == 2 and "Waiting for your review" in card
    assert "Push now" in card
    assert 'option value="101"' in html  # the product is offered in the regenerate form


def test_errors_are_shown_in_plain_words(app, merchant) -> None:
    """A failed render says what went wrong; a partial one names each missing scene with its reason."""
    failed = make_render(app, merchant.id, status=RenderStatus.FAILED, external_id="1",
                         last_error="The product photo could not be downloaded (404).")
    partial = make_render(app, merchant.id, status=RenderStatus.PARTIAL, external_id="2", errors=[
        {"preset": "marble-counter", "reason": "budget", "message": "Skipped: this month's budget is spent."}])
    html = merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True)
    assert "What went wrong:</strong> The product photo could not be downloaded (404)." in html
    assert "Marble counter:</strong> Skipped: this month&#39;s budget is spent." in html
    assert f'id="render-{failed}"' in html and f'id="render-{partial}"' in html


def test_running_renders_are_marked_for_live_updates(app, merchant) -> None:
    """A queued render's card carries its status for the page script, and says it is waiting."""
    render_id = make_render(app, merchant.id, status=RenderStatus.QUEUED)
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    assert f'data-render-id="{render_id}"' in card and 'data-status="queued"' in card
    assert "Waiting for a worker" in card and 'class="spinner"' in card


def test_another_shops_render_is_not_shown(app, merchant) -> None:
    """Another shop's render: 404 under our URL, 403 under theirs; never in our gallery."""
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        other, _, _ = create_shop(session, platform="generic", domain="other.example.com")
        other_id = other.id
    theirs = make_render(app, other_id)
    assert merchant.get(f"/shops/{merchant.id}/renders/{theirs}/card").status_code == 404
    with app.app_context():
        their_asset = app.extensions["catalog_db"].session().get(Render, theirs).assets[0].id
    assert merchant.get(f"/shops/{merchant.id}/thumbs/asset/{their_asset}.webp").status_code == 404
    assert merchant.get(f"/shops/{other_id}/thumbs/asset/{their_asset}.webp").status_code == 403
    assert merchant.get(f"/shops/{other_id}/renders/{theirs}/card").status_code == 403
    assert f'id="render-{theirs}"' not in merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True)


def test_pages_are_served_with_our_own_assets_only(app, merchant) -> None:
    """No outside stylesheet or script; a CSP that says so; the CSS and JS are served by us."""
    html = merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True)
    for ref in re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html):
        if ref == "data:,":  # the empty favicon, so the browser asks nobody for one
            continue
        assert ref.startswith("/static/web/"), ref
        response = merchant.get(ref)
        response.close()
        assert response.status_code == 200
    policy = merchant.get(f"/shops/{merchant.id}/settings").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def set_push(app, render_id: int, status: PushStatus, error: str | None, attempts: int) -> None:  # type: ignore[no-untyped-def]
    with app.app_context(), app.extensions["catalog_db"].transaction() as session:
        for asset in session.get(Render, render_id).assets:
            asset.push_status, asset.push_error, asset.push_attempts = status, error, attempts


def test_images_that_never_reached_the_shop_are_not_shown_as_done(app, merchant, client, shop) -> None:
    """Every push failed: card and API say made but not sent, the store's words once, and offer to send again."""
    render_id = make_render(app, merchant.id)
    set_push(app, render_id, PushStatus.FAILED, "The shop answered 503: try later.", 5)
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    assert "Made, but not sent to your shop" in card and ">Done<" not in card
    assert card.count("The shop answered 503: try later.") == 1
    assert "2 images could not be sent to your shop" in card and "after 5 attempts" in card
    assert f'data-push="{render_id}"' in card and "Send again" in card
    answer = client.get(f"/api/v1/renders/{render_id}", headers={"Authorization": f"Bearer {shop[1]}"}).get_json()
    assert answer["outcome"] == {"state": "not_sent", "message": "Made, but not sent to your shop"}
    assert answer["push"]["status"] == "push_failed" and answer["push"]["can_retry"] is True
    assert answer["push"]["messages"] == ["The shop answered 503: try later."]
    assert answer["push_url"].endswith(f"/api/v1/renders/{render_id}/push")


def test_a_push_that_keeps_failing_shows_its_attempts_and_last_error(app, merchant, client, shop) -> None:
    """Retrying: not a bare "sending"; the card and API give the attempts so far and the store's last words."""
    render_id = make_render(app, merchant.id)
    set_push(app, render_id, PushStatus.PENDING, "The shop answered 429; we will retry", 3)
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    assert 'data-push-status="retrying"' in card and 'data-push-attempts="3"' in card
    assert "Sending to your shop failed 3 times" in card
    assert card.count("The shop answered 429; we will retry") == 1
    answer = client.get(f"/api/v1/renders/{render_id}", headers={"Authorization": f"Bearer {shop[1]}"}).get_json()
    assert answer["push"]["status"] == "retrying" and answer["push"]["attempts"] == 3
    assert answer["push"]["last_error"] == "The shop answered 429; we will retry"
    assert answer["outcome"]["state"] == "send_retrying"


def test_each_error_is_shown_once_per_card(app, merchant) -> None:
    """A partial render's scene error is listed by scene, not again in the render's summary line."""
    message = "Skipped: this month's budget is spent."
    render_id = make_render(app, merchant.id, status=RenderStatus.PARTIAL, last_error=f"marble-counter: {message}",
                            errors=[{"preset": "marble-counter", "reason": "budget", "message": message}])
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    assert card.count("budget is spent") == 1 and "What went wrong" not in card


def test_a_render_with_no_image_says_failed_with_its_reason_once(app, merchant) -> None:
    """The job's "no image was made" line keeps its reason; each scene's reason is listed once, by scene."""
    reason = "The OpenAI provider needs OPENAI_API_KEY on the service."
    render_id = make_render(app, merchant.id, status=RenderStatus.FAILED,
                            last_error=f"No image was made: the cutout is off. studio: {reason}",
                            errors=[{"preset": "studio", "reason": "not_configured", "message": reason}])
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    assert "Failed" in card and "No image was made: the cutout is off." in card
    assert card.count("OPENAI_API_KEY") == 1


def test_the_offline_maker_says_it_ignores_prompts(app, merchant) -> None:
    """With the offline compositor the regenerate forms offer no prompt and say plainly why."""
    render_id = make_render(app, merchant.id)
    html = merchant.get(f"/shops/{merchant.id}/renders").get_data(as_text=True)
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    for page in (html, card):
        assert "ignores prompts" in page and 'name="prompt"' not in page


def test_photos_that_cannot_load_carry_the_reason_for_their_placeholder(app, merchant) -> None:
    """The original and each thumbnail carry the words the page shows in place of a broken image."""
    render_id = make_render(app, merchant.id)
    card = merchant.get(f"/shops/{merchant.id}/renders/{render_id}/card").get_data(as_text=True)
    assert card.count("data-missing=") == 3  # the original and two assets
    assert "can no longer be loaded from its address" in card
