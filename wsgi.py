"""WSGI entry point: `gunicorn wsgi:app` (what `catalog-service serve` runs)."""

from catalog_service.app import create_app

app = create_app()
