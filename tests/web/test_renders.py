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
    assert "Blue mug" in card and "Done" in card and "cost $0.04" in card
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
