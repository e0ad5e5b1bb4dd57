"""GET /api/v1/openapi.json: a valid OpenAPI document covering every route of the api blueprint."""

from __future__ import annotations

import pytest
from marshmallow import RAISE, Schema, fields, validate
from openapi_spec_validator import validate as validate_spec

from catalog_service.openapi import SchemaRegistry, openapi_path

IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Documented for a route another module of the app adds (the settings page's sign-in links).
DOCUMENTED_ELSEWHERE = {("POST", "/api/v1/shops/{shop_id}/login-link")}


@pytest.fixture
def document(client):  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_valid_openapi_and_needs_no_key(document) -> None:
    """Fetched without a key, it validates as OpenAPI 3.1 and has the expected parts."""
    validate_spec(document)
    assert document["openapi"].startswith("3.1")
    assert {"openapi", "info", "servers", "paths", "components", "security"} <= set(document)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "the shop's API key"}
    assert document["paths"]["/openapi.json"]["get"]["security"] == []


def test_every_api_route_is_documented(app, document) -> None:
    """A route added to the api blueprint without an entry in catalog_service/openapi.py fails here."""
    prefix = document["servers"][0]["url"].removeprefix("http://localhost")
    registered = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
        for method in rule.methods - IGNORED_METHODS
    }
    documented = {(method.upper(), prefix + path) for path, item in document["paths"].items() for method in item}
    assert registered, "no api routes found"
    assert registered - documented == set(), "routes without OpenAPI entries"
    assert documented - registered <= DOCUMENTED_ELSEWHERE, "OpenAPI entries for routes that do not exist"


def test_request_bodies_come_from_the_marshmallow_schemas(document) -> None:
    """The regenerate and settings bodies are the schemas the views validate with: fields, limits, no extras."""
    schemas = document["components"]["schemas"]
    operation = document["paths"]["/shops/{shop_id}/products/{product_id}/regenerate"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Regenerate"}
    assert set(operation["responses"]) == {"202", "400", "401", "403", "404", "409", "429"}
    regenerate = schemas["Regenerate"]
    assert regenerate["additionalProperties"] is False
    assert set(regenerate["properties"]) == {"scenes", "prompt", "reference_image_ids", "cutout"}
    assert regenerate["properties"]["prompt"]["maxLength"] == 1000
    assert regenerate["properties"]["scenes"]["items"]["pattern"].startswith("^[a-z0-9]")
    per_minute = schemas["Settings"]["properties"]["regenerate_per_minute"]
    assert (per_minute["type"], per_minute["minimum"], per_minute["maximum"], per_minute["default"]) == (
        "integer", 1, 600, 10)
    assert schemas["Settings"]["properties"]["presets"]["items"] == {"$ref": "#/components/schemas/Preset"}
    listing = document["paths"]["/shops/{shop_id}/renders"]["get"]["parameters"]
    assert {p["name"] for p in listing if p["in"] == "query"} == {"product_id", "status", "push_status", "cursor",
                                                                  "limit"}


def test_the_scene_size_fields_and_product_lock_are_documented(document) -> None:
    """The shop's image ratio and a preset's aspect, long side and product lock appear from the schemas, with their
    choices, limits and defaults; the older fixed size is marked deprecated and says what to use instead."""
    schemas = document["components"]["schemas"]
    ratio = schemas["Settings"]["properties"]["image_ratio"]
    assert (ratio["enum"], ratio["default"]) == (["1:1", "4:5", "3:4", "16:9", "9:16"], "1:1")
    assert schemas["Settings"]["properties"]["scene_presets"]["default"] == ["studio", "brand-gradient", "reference"]
    preset = schemas["Preset"]["properties"]
    assert preset["aspect"]["enum"] == ["", "1:1", "4:5", "3:4", "16:9", "9:16"]
    assert (preset["long_side"]["minimum"], preset["long_side"]["maximum"], preset["long_side"]["default"]) == (
        512, 4096, 2048)
    assert (preset["product_lock"]["enum"], preset["product_lock"]["default"]) == (["exact", "model"], "exact")
    assert preset["size"]["deprecated"] is True and "aspect and long_side" in preset["size"]["description"]
    assert "deprecated" not in preset["aspect"]


def test_converter_maps_validators_to_json_schema() -> None:
    """Length, Range, OneOf, Regexp, required, nullable and nested schemas become their JSON Schema keywords."""

    class Inner(Schema):
        size = fields.Integer(validate=validate.Range(1, 9, max_inclusive=False))

    class Outer(Schema):
        class Meta:
            unknown = RAISE

        name = fields.String(required=True, validate=[validate.Length(max=5), validate.Regexp(r"^a")])
        mode = fields.String(load_default="x", validate=validate.OneOf(["x", "y"]))
        tags = fields.List(fields.String(), load_default=None, validate=validate.Length(min=1))
        inner = fields.Nested(Inner)

    registry = SchemaRegistry()
    assert registry.ref(Outer) == {"$ref": "#/components/schemas/Outer"}
    outer = registry.components["Outer"]
    assert outer["required"] == ["name"] and outer["additionalProperties"] is False
    assert outer["properties"]["name"] == {"type": "string", "maxLength": 5, "pattern": "^a"}
    assert outer["properties"]["mode"] == {"type": "string", "enum": ["x", "y"], "default": "x"}
    assert outer["properties"]["tags"] == {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1}
    assert registry.components["Inner"]["properties"]["size"] == {
        "type": "integer", "minimum": 1, "exclusiveMaximum": 9}
