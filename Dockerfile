# One image for the web app and the workers: `catalog-service serve` or `catalog-service worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CATALOG_VAR_DIR=/var/lib/catalog \
    CATALOG_MODEL_DIR=/opt/catalog/models

WORKDIR /opt/catalog
COPY pyproject.toml README.md ./
COPY catalog_service ./catalog_service
COPY webhooks ./webhooks
COPY jobs ./jobs
COPY wsgi.py ./
RUN pip install --no-cache-dir . \
    && catalog-service models install \
    && useradd --system --home /var/lib/catalog --create-home catalog

USER catalog
EXPOSE 8000
CMD ["catalog-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
