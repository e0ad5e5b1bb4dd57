"""The OpenAPI 3.1 document of /api/v1: request bodies generated from the marshmallow schemas that check them.

`schema_of()` turns a marshmallow schema into JSON Schema (the subset our schemas use); `api_document()`
puts it together with one entry per route in ROUTES. tests/test_openapi.py fails when a route of the api
blueprint is missing here.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, fields, missing, validate

from .models import AssetKind, PushStatus, RenderStatus

OPENAPI_VERSION = "3.1.0"

ERROR = {"$ref": "#/components/schemas/Error"}


class SchemaRegistry:
    """Named component schemas, filled as marshmallow schemas are converted."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, schema: Schema | type[Schema], name: str | None = None) -> dict[str, str]:
        """A $ref to the component for this marshmallow schema, converting it the first time."""
        cls = schema if isinstance(schema, type) else type(schema)
        name = name or cls.__name__.removesuffix("Schema")
        if name not in self.components:
            self.components[name] = {}  # reserved first: a schema may refer to itself
            self.components[name] = self.object_of(schema if isinstance(schema, Schema) else cls())
        return {"$ref": f"#/components/schemas/{name}"}

    def object_of(self, schema: Schema) -> dict[str, Any]:
        """A JSON Schema object for a marshmallow schema: its load fields, required ones, unknown keys."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, field in schema.load_fields.items():
            key = field.data_key or name
            properties[key] = self.field(field)
            if field.required:
                required.append(key)
        result: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            result["required"] = required
        if schema.unknown == RAISE:
            result["additionalProperties"] = False
        doc = type(schema).__doc__
        if doc:
            result["description"] = doc.strip().splitlines()[0]
        return result

    def field(self, field: fields.Field) -> dict[str, Any]:
        """JSON Schema for one marshmallow field, with its validators, default and description."""
        if isinstance(field, fields.Nested):
            nested = field.nested() if callable(field.nested) and not isinstance(field.nested, type) else field.nested
            if not isinstance(nested, Schema | type):
                raise TypeError(f"cannot describe a Nested field of {nested!r}")  # a dict of fields: not used here
            result: dict[str, Any] = dict(self.ref(nested))
            if field.many:
                result = {"type": "array", "items": result}
        elif isinstance(field, fields.List):
            result = {"type": "array", "items": self.field(field.inner)}
        elif isinstance(field, fields.Dict):
            result = {"type": "object"}
        elif isinstance(field, fields.Boolean):
            result = {"type": "boolean"}
        elif isinstance(field, fields.Integer):
            result = {"type": "integer"}
        elif isinstance(field, fields.Number):
            result = {"type": "number"}
        elif isinstance(field, (fields.DateTime, fields.Date)):
            result = {"type": "string", "format": "date-time" if isinstance(field, fields.DateTime) else "date"}
        else:
            result = {"type": "string"}
        for validator in field.validators:
            result.update(_validator(validator, result.get("type")))
        default = field.load_default
        if callable(default):
            default = default()
        if default is not None and default is not missing and isinstance(default, (str, int, float, bool, list)):
            result["default"] = default
        if field.allow_none:
            if isinstance(result.get("type"), str):
                result["type"] = [result["type"], "null"]
            else:
                result = {"anyOf": [result, {"type": "null"}]}
        description = field.metadata.get("description")
        if description:
            result["description"] = description
        if field.metadata.get("deprecated"):
            result["deprecated"] = True  # still accepted; the description says what to use instead
        return result


def _validator(validator: Any, kind: Any) -> dict[str, Any]:
    """The JSON Schema keywords of one marshmallow validator (custom callables say nothing)."""
    if isinstance(validator, validate.Length):
        low, high = ("minItems", "maxItems") if kind == "array" else ("minLength", "maxLength")
        if validator.equal is not None:
            return {low: validator.equal, high: validator.equal}
        return {key: value for key, value in ((low, validator.min), (high, validator.max)) if value is not None}
    if isinstance(validator, validate.Range) and kind in ("integer", "number"):
        # JSON Schema bounds only numbers; a date range (webhooks' updated_at) is said in its description.
        out: dict[str, Any] = {}
        if validator.min is not None:
            out["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
        if validator.max is not None:
            out["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
        return out
    if isinstance(validator, validate.OneOf):
        return {"enum": list(validator.choices)}
    if isinstance(validator, validate.Regexp):
        return {"pattern": validator.regex.pattern}
    return {}


def query_parameters(schema: Schema, registry: SchemaRegistry) -> list[dict[str, Any]]:
    """A marshmallow query schema as OpenAPI query parameters."""
    return [{"name": field.data_key or name, "in": "query", "required": field.required,
             "schema": {k: v for k, v in registry.field(field).items() if k != "description"},
             **({"description": field.metadata["description"]} if field.metadata.get("description") else {})}
            for name, field in schema.load_fields.items()]


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /shops/<int:shop_id> -> /shops/{shop_id}."""
    return re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule)


# --- response shapes (what the views return; hand-written, they are plain dicts in api.py) -----------------

_NULLABLE_STRING = {"type": ["string", "null"]}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "integer"}, "message": {"type": "string", "description": "what to do about it"},
            "fields": {"type": "object", "description": "per-field messages of a 400"},
            "retry_after_s": {"type": "integer", "description": "429: seconds to wait (also Retry-After)"}}}},
    },
    "Asset": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "kind": {"enum": [k.value for k in AssetKind]}, "preset": {"type": "string"},
            "width": {"type": "integer"}, "height": {"type": "integer"}, "bytes": {"type": "integer"},
            "content_type": {"type": "string"}, "cost_usd": {"type": "number"}, "version": {"type": "integer"},
            "parent_asset_id": {"type": ["integer", "null"]}, "instruction": _NULLABLE_STRING,
            "push_status": {"enum": [s.value for s in PushStatus]}, "push_error": _NULLABLE_STRING,
            "estimate_usd": {"type": ["number", "null"],
                             "description": "a paid scene's estimate before the call, beside what it cost"},
            "fidelity": {"type": ["object", "null"], "description": "how faithful the product is in a scene: "
                         "delta_e (mean CIEDE2000 colour difference), ssim (structure, 0-1) and passed",
                         "properties": {"delta_e": {"type": "number"}, "ssim": {"type": "number"},
                                        "passed": {"type": "boolean"}}},
            "hold_reason": {**_NULLABLE_STRING, "description": "why a scene waits for review whatever the "
                            "publish mode (the product changed)"},
            "digital_source_type": {**_NULLABLE_STRING, "description": "the IPTC Digital Source Type the file is "
                                    "marked with when a generative model touched it"},
            "url": {"type": "string", "format": "uri", "description": "signed link to the image, valid for an hour"},
        },
    },
    "Backfill": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "shop_id": {"type": "integer"},
            "status": {"enum": ["collecting", "ready", "running", "paused", "done", "cancelled", "failed"]},
            "dry_run": {"type": "boolean"}, "filters": {"type": "object"},
            "scenes": {"type": "array", "items": {"type": "string"}},
            "total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"},
            "skipped": {"type": "integer", "description": "no photo, or already done with the same photos and "
                                                          "settings, or carrying our images (when asked)"},
            "queued": {"type": "integer"}, "remaining": {"type": "integer"},
            "cost_usd": {"type": "number", "description": "spent so far"},
            "estimate": {"type": ["object", "null"], "description": "products, images, scenes, cost_usd, "
                         "usd_per_product, time_s (at the measured throughput of one worker), provider, model, "
                         "quality, batch_price"},
            "eta_s": {"type": ["integer", "null"]}, "pause_reason": _NULLABLE_STRING, "error": _NULLABLE_STRING,
            "added": {"type": "integer", "description": "POST .../products: products new to the backfill"},
        },
    },
    "Render": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "shop_id": {"type": "integer"},
            "product_id": {"type": "string", "description": "the shop's product id"},
            "status": {"enum": [s.value for s in RenderStatus]},
            "trigger": {"type": "string", "description": "webhook | manual | refine | demo"},
            "attempts": {"type": "integer"}, "error": _NULLABLE_STRING,
            "scene_errors": {"type": "array", "items": {"type": "object", "properties": {
                "preset": {"type": "string"}, "reason": {"type": "string"}, "message": {"type": "string"}}}},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "options": {"type": "object", "description": "what a manual regenerate asked for"},
            "product": {"type": "object", "properties": {
                "title": {"type": "string"},
                "source_images": {"type": "array", "items": {"type": "string", "format": "uri"}}}},
            "assets": {"type": "array", "items": {"$ref": "#/components/schemas/Asset"}},
            "push": {"type": "object", "properties": {
                "status": {"enum": ["push_failed", "held", "pending", "pushed", "nothing_to_push"]},
                "errors": {"type": "array", "items": {"type": "object"}}}},
        },
    },
    "RenderPage": {
        "type": "object", "required": ["renders", "next_cursor"],
        "properties": {"renders": {"type": "array", "items": {"$ref": "#/components/schemas/Render"}},
                       "next_cursor": {"type": ["string", "null"], "description": "null on the last page"}},
    },
    "Accepted": {
        "type": "object",
        "properties": {"render_id": {"type": "integer"}, "status_url": {"type": "string", "format": "uri"},
                       "queued": {"type": "boolean", "description": "false: Redis was down; the sweeper queues it"}},
    },
    "ReviewResult": {
        "type": "object",
        "properties": {"asset_id": {"type": "integer"}, "push_status": {"enum": [s.value for s in PushStatus]},
                       "queued": {"type": "boolean"}, "status_url": {"type": "string", "format": "uri"}},
    },
    "PushAccepted": {
        "type": "object",
        "properties": {"render_id": {"type": "integer"},
                       "assets": {"type": "integer", "description": "assets queued for the shop"},
                       "held": {"type": "integer", "description": "review mode: assets still waiting for approval"},
                       "queued": {"type": "boolean"}, "status_url": {"type": "string", "format": "uri"}},
    },
    "BulkReviewResult": {
        "type": "object", "required": ["assets", "done", "failed"],
        "properties": {
            "assets": {"type": "array", "items": {"type": "object", "required": ["asset_id"], "properties": {
                "asset_id": {"type": "integer"}, "push_status": {"enum": [s.value for s in PushStatus]},
                "error": {"type": "object", "properties": {"code": {"type": "integer"},
                                                           "message": {"type": "string"}}}}}},
            "done": {"type": "integer"}, "failed": {"type": "integer"}},
    },
    "ProductPage": {
        "type": "object", "required": ["products", "more"],
        "properties": {
            "products": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string", "description": "the shop's product id"}, "title": {"type": "string"},
                "image": {"type": ["string", "null"], "format": "uri"}}}},
            "more": {"type": "boolean", "description": "more products match: narrow the search"}},
    },
    "ReferenceImage": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "width": {"type": "integer"},
                       "height": {"type": "integer"}, "content_type": {"type": "string"},
                       "created_at": {"type": "string", "format": "date-time"}},
    },
    "Usage": {
        "type": "object",
        "properties": {
            "usage": {"type": "array", "items": {"type": "object", "properties": {
                "month": {"type": "string"}, "model": {"type": "string"}, "quality": {"type": "string"},
                "calls": {"type": "integer"}, "cost_usd": {"type": "number"},
                "input_text_tokens": {"type": "integer"}, "input_image_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"}}}},
            "this_month": {"type": "object", "properties": {
                "month": {"type": "string"}, "spent_usd": {"type": "number"}, "budget_usd": {"type": "number"}}},
        },
    },
    "LoginLink": {
        "type": "object", "required": ["url", "expires_at"],
        "properties": {"url": {"type": "string", "format": "uri", "description": "signed, single use"},
                       "expires_at": {"type": "string", "format": "date-time"}},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, **(_json(schema) if schema is not None else {})}


def _component(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERRORS = {
    "400": "the body or query is not valid (`fields` names each problem)",
    "401": "no API key, a wrong one, or no signed-in session",
    "403": "the key or session is another shop's, or a session write without its X-CSRF-Token",
    "404": "no such object in this shop",
    "409": "the object is not in a state this applies to",
    "429": "too many requests; wait Retry-After seconds",
}


def _operation(summary: str, responses: dict[str, Any], errors: str, **extra: Any) -> dict[str, Any]:
    answers = dict(responses)
    for code in errors.split():
        answers[code] = {"description": _ERRORS[code], **_json(ERROR)}
    return {"summary": summary, "responses": answers, **extra}


def routes(registry: SchemaRegistry) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, Flask rule under /api/v1) -> its OpenAPI operation. Every route of the api blueprint is here."""
    from .api import PRODUCT_SEARCH_QUERY, RENDER_LIST_QUERY, BulkReviewSchema, PushSchema, RefineSchema
    from .api_backfills import BackfillSchema, ProductsSchema
    from .manual import MAX_BULK_ASSETS
    from .schemas import RegenerateSchema, SettingsSchema

    settings = registry.ref(SettingsSchema)
    backfill = _component("Backfill")
    return {
        ("POST", "/shops/<int:shop_id>/products/<product_id>/regenerate"): _operation(
            "Render a product again (manual regenerate)",
            {"202": _ok("queued; poll status_url", _component("Accepted"))}, "400 401 403 404 409 429",
            description="An empty body uses the shop's settings. At most `regenerate_per_minute` requests a "
                        "minute per shop (429 with Retry-After). 409 when the product has no photo.",
            requestBody={"required": False, **_json(registry.ref(RegenerateSchema))}),
        ("GET", "/renders/<int:render_id>"): _operation(
            "A render's status, errors and assets", {"200": _ok("the render", _component("Render"))}, "401 404"),
        ("GET", "/shops/<int:shop_id>/renders"): _operation(
            "The shop's renders, newest first", {"200": _ok("one page", _component("RenderPage"))}, "400 401 403",
            parameters=query_parameters(RENDER_LIST_QUERY, registry)),
        ("POST", "/renders/<int:render_id>/push"): _operation(
            "Push a render's failed assets again (and held ones, outside review mode)",
            {"202": _ok("queued", _component("PushAccepted"))}, "400 401 404 409",
            description="In review mode a held image is pushed only when approved: 409 when nothing but held "
                        "images is left, unless the body says `approve_held`.",
            requestBody={"required": False, **_json(registry.ref(PushSchema))}),
        ("POST", "/shops/<int:shop_id>/assets/approve"): _operation(
            "Review mode: approve many assets", {"200": _ok("one result per id", _component("BulkReviewResult"))},
            "400 401 403", description=f"At most {MAX_BULK_ASSETS} ids. An id that is not this shop's, or an "
                                       "asset that cannot be approved, gets an `error` in its result.",
            requestBody={"required": True, **_json(registry.ref(BulkReviewSchema))}),
        ("POST", "/shops/<int:shop_id>/assets/reject"): _operation(
            "Reject many assets", {"200": _ok("one result per id", _component("BulkReviewResult"))},
            "400 401 403", description=f"At most {MAX_BULK_ASSETS} ids. One already on the shop is taken off by "
                                       "a job (push_status `removing`).",
            requestBody={"required": True, **_json(registry.ref(BulkReviewSchema))}),
        ("GET", "/shops/<int:shop_id>/products"): _operation(
            "Search the shop's products", {"200": _ok("one page", _component("ProductPage"))}, "400 401 403",
            parameters=query_parameters(PRODUCT_SEARCH_QUERY, registry)),
        ("POST", "/assets/<int:asset_id>/approve"): _operation(
            "Review mode: push this asset", {"202": _ok("push queued", _component("ReviewResult"))}, "401 404 409"),
        ("POST", "/assets/<int:asset_id>/reject"): _operation(
            "Review mode: never push this asset",
            {"200": _ok("rejected", _component("ReviewResult")),
             "202": _ok("it was on the shop; a job takes it off", _component("ReviewResult"))}, "401 404"),
        ("POST", "/assets/<int:asset_id>/refine"): _operation(
            "A new version of a scene from an instruction", {"202": _ok("queued", _component("Accepted"))},
            "400 401 404 409", requestBody={"required": True, **_json(registry.ref(RefineSchema))},
            description="409 at once, with `reason`, when the shop's scene maker cannot refine (the compositor: "
                        "`not_supported`; OpenAI without a key on this service: `not_configured`)."),
        ("GET", "/shops/<int:shop_id>/reference-images"): _operation(
            "The shop's reference images",
            {"200": _ok("the list", {"type": "object", "properties": {
                "reference_images": {"type": "array", "items": _component("ReferenceImage")}}})}, "401 403"),
        ("POST", "/shops/<int:shop_id>/reference-images"): _operation(
            "Add a reference image (upload or URL)", {"201": _ok("stored", _component("ReferenceImage"))},
            "400 401 403 409", requestBody={"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary"}, "name": {"type": "string"}}}},
                "application/json": {"schema": {"type": "object", "required": ["url"], "properties": {
                    "url": {"type": "string", "format": "uri"}, "name": {"type": "string"}}}}}}),
        ("DELETE", "/shops/<int:shop_id>/reference-images/<int:image_id>"): _operation(
            "Delete a reference image", {"204": {"description": "deleted"}}, "401 403 404"),
        ("GET", "/shops/<int:shop_id>/usage"): _operation(
            "Spend by month, model and quality", {"200": _ok("usage", _component("Usage"))}, "401 403"),
        ("GET", "/shops/<int:shop_id>/settings"): _operation(
            "The shop's settings, defaults filled in", {"200": _ok("settings", settings)}, "401 403"),
        ("PUT", "/shops/<int:shop_id>/settings"): _operation(
            "Replace the shop's settings", {"200": _ok("saved", settings)}, "400 401 403",
            description="A full replacement: every key left out takes its default. To change some keys and keep "
                        "the rest, use PATCH.",
            requestBody={"required": True, **_json(settings)}),
        ("PATCH", "/shops/<int:shop_id>/settings"): _operation(
            "Change some of the shop's settings (JSON merge patch)", {"200": _ok("saved", settings)},
            "400 401 403",
            description="A JSON merge patch (RFC 7396): the keys named change, objects such as `cutout` merge key "
                        "by key, lists such as `presets` are replaced whole, `null` resets a key to its default, "
                        "and every key not named is kept. The result is validated like a PUT.",
            requestBody={"required": True, "content": {
                media: {"schema": _settings_patch(registry)}
                for media in ("application/merge-patch+json", "application/json")}}),
        ("POST", "/shops/<int:shop_id>/login-link"): _operation(
            "A signed, expiring, single-use login link to the settings page",
            {"200": _ok("the link", _component("LoginLink"))}, "401 403"),
        ("POST", "/shops/<int:shop_id>/backfills"): _operation(
            "Do the shop's existing catalog: collect, estimate, then render (a backfill)",
            {"201": _ok("created; `estimate` once the catalog is read", backfill)}, "400 401 403 409",
            description="Shopify shops are read through a bulk operation and WooCommerce shops page by page "
                        "(status `collecting` until done); a generic shop sends `products`, or, without them, "
                        "takes the products its webhooks told us about. `dry_run` (the default) stops at the "
                        "estimate: start it with /start. One unfinished backfill per shop (409).",
            requestBody={"required": False, **_json(registry.ref(BackfillSchema))}),
        ("GET", "/shops/<int:shop_id>/backfills"): _operation(
            "The shop's backfills, newest first", {"200": _ok("backfills", {
                "type": "object", "properties": {"backfills": {"type": "array", "items": backfill}}})}, "401 403"),
        ("GET", "/shops/<int:shop_id>/backfills/<int:backfill_id>"): _operation(
            "A backfill's progress", {"200": _ok("progress", backfill)}, "401 403 404"),
        ("POST", "/shops/<int:shop_id>/backfills/<int:backfill_id>/products"): _operation(
            "Generic shops: more products for a backfill that has not started", {"200": _ok("added", backfill)},
            "400 401 403 404 409", requestBody={"required": True, **_json(registry.ref(ProductsSchema))}),
        **{("POST", f"/shops/<int:shop_id>/backfills/<int:backfill_id>/{action}"): _operation(
            summary, {"200": _ok("the backfill", backfill)}, "401 403 404 409")
           for action, summary in (
               ("start", "Start a ready backfill (after a dry run)"),
               ("pause", "Pause: renders already queued finish, no more are queued"),
               ("resume", "Resume a paused backfill"),
               ("cancel", "Cancel: products not yet queued are left as they are"))},
        ("GET", "/openapi.json"): _operation(
            "This document", {"200": _ok("OpenAPI 3.1", {"type": "object"})}, "", security=[]),
    }


def _settings_patch(registry: SchemaRegistry) -> dict[str, Any]:
    """The Settings component with every key optional and nullable (null resets it): a merge patch of it."""
    from .schemas import SettingsSchema

    registry.ref(SettingsSchema)
    full = registry.components["Settings"]
    return {"type": "object", "additionalProperties": False,
            "description": "settings to change; null resets a key to its default",
            "properties": {key: {"anyOf": [value, {"type": "null"}]} for key, value in full["properties"].items()}}


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "integer"} if converter == "int" else {"type": "string"},
             **({"description": "the shop's own product id"} if name == "product_id" else {})}
            for converter, name in re.findall(r"<(?:([a-z]+):)?(\w+)>", rule)]


def api_document(server_url: str = "/api/v1") -> dict[str, Any]:
    """The whole OpenAPI document."""
    registry = SchemaRegistry()
    paths: dict[str, dict[str, Any]] = {}
    for (method, rule), operation in routes(registry).items():
        entry = paths.setdefault(openapi_path(rule), {})
        params = _path_parameters(rule)
        operation = {**operation, "operationId": _operation_id(method, rule)}
        if params:
            operation["parameters"] = params + operation.get("parameters", [])
        entry[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Catalog service API", "version": "1",
                 "description": "Cutouts and lifestyle scenes for shop products. Every route but this document "
                                "wants the shop's API key as `Authorization: Bearer <key>`; the settings page "
                                "uses its session cookie instead, with `X-CSRF-Token` on every write."},
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}, {"sessionCookie": [], "csrfToken": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "the shop's API key"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session",
                                  "description": "the settings page's signed-in session"},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                              "description": "with the session cookie, required on POST, PUT, PATCH and DELETE"},
            },
            "schemas": {**RESPONSE_SCHEMAS, **registry.components},
        },
    }


def _operation_id(method: str, rule: str) -> str:
    """`get_shops_renders` for GET /shops/<id>/renders. A rule that ends in an id, beside a list rule with the
    same words (GET /shops/<id>/backfills/<id>), gets `_item`; older rules keep the ids clients know them by."""
    words = re.sub(r"<[^>]+>", "", rule).replace("-", "_").replace(".", "_").strip("/").split("/")
    name = method.lower() + "_" + "_".join(word for word in words if word)
    return name + "_item" if rule.endswith("<int:backfill_id>") else name
