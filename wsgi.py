"""WSGI entry point: `gunicorn wsgi:app` (what `catalog-service serve` runs)."""

from catalog_service.app import create_app, freeze_for_workers

app = create_app()
freeze_for_workers()
