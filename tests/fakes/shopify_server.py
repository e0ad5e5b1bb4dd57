"""A fake Shopify on loopback: the GraphQL Admin API parts we use, plus the staged upload target.

    with FakeShopify() as shop:
        product = shop.add_product(1001)
        store = ShopifyStore(shop_domain=shop.shop_domain, access_token=shop.access_token,
                             api_base_url=shop.url, sleep=lambda s: None)
        ...
        shop.product_media(1001)  # what is on the product now

Written from shopify.dev's Admin GraphQL reference. Documents are parsed and validated with
graphql-core against `SCHEMA_SDL`, which declares exactly the fields, arguments and types we use,
with Shopify's names; a misspelt field gets the validation error Shopify would give (HTTP 200,
`errors[]`, no `data`). Valid documents run on resolvers over an in-memory store.

Routes:
- `POST /admin/api/<version>/graphql.json`: needs `X-Shopify-Access-Token` (401 otherwise).
- `POST /staged-uploads/<target id>`: the upload target; a multipart form whose parameters come
  first and the file last, with no Shopify token (it is a storage bucket, not the shop).
- `POST /admin/oauth/access_token`: a code (`expiring=1`) or a refresh token for an expiring pair,
  answered with `expires_in` and `refresh_token_expires_in` (`refresh_token_lifetime_s`). As at
  Shopify, one token is active per app and shop: a new pair revokes the previous access and refresh
  tokens. `token_refreshes` lists the refresh requests.

Media created by `productUpdate` start PROCESSING and turn READY (or FAILED, when scripted) after
`ready_after_polls` reads of their status. Scripts, each for the next N GraphQL requests:
`throttle(n)` (HTTP 200 THROTTLED with throttleStatus), `http_error(status, n, retry_after=...)`
(429/503/500/401...), `user_errors(mutation, message)`, `fail_next_media(message)`.
`rotate_token(new)` makes the old token invalid. Every request is recorded in `requests`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.parser
import email.policy
import itertools
import json
import re
import threading
import traceback
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from graphql import GraphQLError, build_schema, execute, parse, validate

from .loopback import LoopbackFake

SCHEMA_SDL = """
schema { query: QueryRoot  mutation: Mutation }

scalar URL
scalar UnsignedInt64

interface Node { id: ID! }

enum MediaStatus { UPLOADED PROCESSING READY FAILED }
enum FileStatus { UPLOADED PROCESSING READY FAILED }
enum MediaPreviewImageStatus { UPLOADED PROCESSING READY FAILED }
enum MediaContentType { EXTERNAL_VIDEO IMAGE MODEL_3D VIDEO }
enum MediaErrorCode {
  UNKNOWN INVALID_SIGNED_URL IMAGE_DOWNLOAD_FAILURE IMAGE_PROCESSING_FAILURE MEDIA_TIMEOUT_ERROR
  UNSUPPORTED_IMAGE_FILE_TYPE INVALID_IMAGE_FILE_SIZE INVALID_IMAGE_ASPECT_RATIO INVALID_IMAGE_RESOLUTION
  FILE_STORAGE_LIMIT_EXCEEDED DUPLICATE_FILENAME_ERROR
}
enum StagedUploadHttpMethodType { POST PUT }
enum StagedUploadTargetGenerateUploadResource {
  BULK_MUTATION_VARIABLES COLLECTION_IMAGE FILE IMAGE MODEL_3D PRODUCT_IMAGE SHOP_IMAGE URL_REDIRECT_IMPORT
  VIDEO RETURN_LABEL DISPUTE_FILE_UPLOAD
}
enum FilesErrorCode {
  FILE_DOES_NOT_EXIST NON_READY_STATE INVALID REFERENCE_TARGET_DOES_NOT_EXIST TOO_MANY_ARGUMENTS
  MISSING_ARGUMENTS UNACCEPTABLE_ASSET
}

type Image { id: ID  url: URL!  altText: String  width: Int  height: Int }
type MediaError { code: MediaErrorCode!  details: String  message: String! }
type MediaPreviewImage { image: Image  status: MediaPreviewImageStatus! }
type MediaImageOriginalSource { fileSize: Int  url: URL }

interface Media {
  alt: String
  id: ID!
  mediaContentType: MediaContentType!
  mediaErrors: [MediaError!]!
  preview: MediaPreviewImage
  status: MediaStatus!
}

interface File {
  alt: String
  id: ID!
  fileStatus: FileStatus!
  preview: MediaPreviewImage
}

type MediaImage implements Node & Media & File {
  alt: String
  id: ID!
  mediaContentType: MediaContentType!
  mediaErrors: [MediaError!]!
  preview: MediaPreviewImage
  status: MediaStatus!
  fileStatus: FileStatus!
  image: Image
  mimeType: String
  originalSource: MediaImageOriginalSource
}

type PageInfo { hasNextPage: Boolean!  hasPreviousPage: Boolean!  startCursor: String  endCursor: String }
type MediaEdge { cursor: String!  node: Media! }
type MediaConnection { edges: [MediaEdge!]!  nodes: [Media!]!  pageInfo: PageInfo! }

enum ProductStatus { ACTIVE ARCHIVED DRAFT }
scalar DateTime

type Product implements Node {
  id: ID!
  title: String!
  descriptionHtml: String!
  vendor: String!
  productType: String!
  tags: [String!]!
  status: ProductStatus!
  createdAt: DateTime!
  updatedAt: DateTime!
  media(first: Int, after: String, last: Int, before: String, reverse: Boolean = false): MediaConnection!
}
type ProductEdge { cursor: String!  node: Product! }
type ProductConnection { edges: [ProductEdge!]!  nodes: [Product!]!  pageInfo: PageInfo! }

type Collection implements Node { id: ID!  handle: String!  title: String! }
input CollectionIdentifierInput { id: ID  handle: String }

enum BulkOperationStatus { CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }
enum BulkOperationErrorCode { ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }
enum BulkOperationType { MUTATION QUERY }
enum BulkOperationUserErrorCode { INVALID LIMIT_REACHED OPERATION_IN_PROGRESS }
type BulkOperation implements Node {
  completedAt: DateTime
  createdAt: DateTime!
  errorCode: BulkOperationErrorCode
  fileSize: UnsignedInt64
  id: ID!
  objectCount: UnsignedInt64!
  partialDataUrl: URL
  query: String!
  rootObjectCount: UnsignedInt64!
  status: BulkOperationStatus!
  type: BulkOperationType!
  url: URL
}
type BulkOperationUserError { code: BulkOperationUserErrorCode  field: [String!]  message: String! }
type BulkOperationRunQueryPayload { bulkOperation: BulkOperation  userErrors: [BulkOperationUserError!]! }

type UserError { field: [String!]  message: String! }
type FilesUserError { code: FilesErrorCode  field: [String!]  message: String! }

type StagedUploadParameter { name: String!  value: String! }
type StagedMediaUploadTarget { parameters: [StagedUploadParameter!]!  resourceUrl: URL  url: URL }
type StagedUploadsCreatePayload { stagedTargets: [StagedMediaUploadTarget!]  userErrors: [UserError!]! }
type ProductUpdatePayload { product: Product  userErrors: [UserError!]! }
type FileUpdatePayload { files: [File!]  userErrors: [FilesUserError!]! }
type FileDeletePayload { deletedFileIds: [ID!]  userErrors: [FilesUserError!]! }

input StagedUploadInput {
  filename: String!
  fileSize: UnsignedInt64
  httpMethod: StagedUploadHttpMethodType = PUT
  mimeType: String!
  resource: StagedUploadTargetGenerateUploadResource!
}
input CreateMediaInput { alt: String  mediaContentType: MediaContentType!  originalSource: String! }
input ProductUpdateInput { id: ID  title: String  descriptionHtml: String  handle: String }
input FileUpdateInput {
  alt: String
  filename: String
  id: ID!
  originalSource: String
  previewImageSource: String
  referencesToAdd: [ID!]
  referencesToRemove: [ID!]
}

type QueryRoot {
  node(id: ID!): Node
  product(id: ID!): Product
  products(first: Int, after: String, query: String): ProductConnection!
  collectionByIdentifier(identifier: CollectionIdentifierInput!): Collection
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
}

enum WebhookSubscriptionTopic { PRODUCTS_CREATE PRODUCTS_UPDATE PRODUCTS_DELETE APP_UNINSTALLED }
enum WebhookSubscriptionFormat { JSON XML }
input WebhookSubscriptionInput { uri: String!  format: WebhookSubscriptionFormat  includeFields: [String!] }
type WebhookSubscription { id: ID!  topic: WebhookSubscriptionTopic!  uri: String! }
type WebhookSubscriptionCreatePayload { webhookSubscription: WebhookSubscription  userErrors: [UserError!]! }

type Mutation {
  webhookSubscriptionCreate(
    topic: WebhookSubscriptionTopic!, webhookSubscription: WebhookSubscriptionInput!
  ): WebhookSubscriptionCreatePayload
  stagedUploadsCreate(input: [StagedUploadInput!]!): StagedUploadsCreatePayload
  productUpdate(product: ProductUpdateInput, media: [CreateMediaInput!]): ProductUpdatePayload
  fileUpdate(files: [FileUpdateInput!]!): FileUpdatePayload
  fileDelete(fileIds: [ID!]!): FileDeletePayload
  bulkOperationRunQuery(query: String!, groupObjects: Boolean! = false): BulkOperationRunQueryPayload
}
"""

PRODUCT_GID = "gid://shopify/Product/"
MEDIA_GID = "gid://shopify/MediaImage/"
PRODUCT_IMAGE_GID = "gid://shopify/ProductImage/"
COLLECTION_GID = "gid://shopify/Collection/"
BULK_GID = "gid://shopify/BulkOperation/"
MAX_RUNNING_BULK_QUERIES = 5  # per shop, from API version 2026-01
_SEARCH_TERM = re.compile(r"""(\w+):(>=|<=|>|<)?("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S+)""")
BUCKET_PARAMETERS = ("Content-Type", "success_action_status", "acl", "key", "x-goog-date", "x-goog-credential",
                     "x-goog-algorithm", "x-goog-signature", "policy")
DEFAULT_BUCKET = {"maximumAvailable": 2000.0, "restoreRate": 100.0}


@dataclasses.dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    query: str = ""
    variables: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.headers.get("x-shopify-access-token", "")

    @property
    def is_graphql(self) -> bool:
        return self.path.endswith("/graphql.json")


@dataclasses.dataclass
class Upload:
    """One file received by a staged upload target."""

    target_id: str
    field_order: list[str]
    filename: str
    content_type: str
    data: bytes


@dataclasses.dataclass
class StagedTarget:
    id: str
    filename: str
    mime_type: str
    http_method: str
    parameters: list[dict[str, str]]
    resource_url: str
    upload: Upload | None = None


class MediaRecord:
    """A MediaImage in the fake's store; `status` reads count as polls."""

    def __init__(self, *, gid: str, alt: str | None, filename: str, cdn_url: str, status: str,
                 polls_left: int = 0, fail_message: str | None = None, data: bytes = b"",
                 image_id: str | None = None) -> None:
        self.id = gid
        self.image_id = image_id  # the ProductImage gid Shopify gives a product's image
        self.alt = alt
        self.filename = filename
        self.cdn_url = cdn_url
        self._status = status
        self.polls_left = polls_left
        self.fail_message = fail_message
        self.data = data
        self.mediaContentType = "IMAGE"
        self.mimeType = "image/png"
        self.lock = threading.Lock()

    @property
    def current_status(self) -> str:
        return self._status

    def status(self, info: Any) -> str:
        with self.lock:
            if self._status == "PROCESSING":
                if self.polls_left <= 0:
                    self._status = "FAILED" if self.fail_message else "READY"
                else:
                    self.polls_left -= 1
            return self._status

    def fileStatus(self, info: Any) -> str:  # noqa: N802 - GraphQL field name
        return self.status(info)

    def mediaErrors(self, info: Any) -> list[dict[str, Any]]:  # noqa: N802
        if self._status != "FAILED":
            return []
        return [{"code": "IMAGE_PROCESSING_FAILURE", "details": None, "message": self.fail_message or "failed"}]

    def image(self, info: Any) -> dict[str, Any] | None:
        if self._status != "READY":
            return None
        return {"id": self.image_id, "url": self.cdn_url, "altText": self.alt}

    def preview(self, info: Any) -> dict[str, Any]:
        return {"image": self.image(info), "status": self._status}

    def originalSource(self, info: Any) -> dict[str, Any]:  # noqa: N802
        return {"url": self.cdn_url, "fileSize": len(self.data)}


class ProductRecord:
    def __init__(self, number: int, title: str, *, description_html: str = "", vendor: str = "",
                 product_type: str = "", tags: tuple[str, ...] | list[str] = (), status: str = "ACTIVE",
                 created_at: str = "2026-01-05T10:00:00Z", updated_at: str | None = None) -> None:
        self.id = f"{PRODUCT_GID}{number}"
        self.title = title
        self.descriptionHtml = description_html
        self.vendor = vendor
        self.productType = product_type
        self.tags = list(tags)
        self.status = status
        self.createdAt = created_at
        self.updatedAt = updated_at or created_at
        self.collections: set[str] = set()
        self.media_list: list[MediaRecord] = []

    def media(self, info: Any, first: int | None = None, after: str | None = None, last: int | None = None,
              before: str | None = None, reverse: bool = False) -> dict[str, Any]:
        if first is None and last is None and not _in_bulk(info):
            raise GraphQLError("you must provide one of first or last")
        if (first or 0) > 250 or (last or 0) > 250:
            raise GraphQLError("first cannot exceed 250.")
        items = list(reversed(self.media_list)) if reverse else list(self.media_list)
        start = int(after) + 1 if after else 0
        page = items[start:] if _in_bulk(info) else items[start:start + (first or 250)]
        return {
            "nodes": page,
            "edges": [{"cursor": str(start + i), "node": m} for i, m in enumerate(page)],
            "pageInfo": {
                "hasNextPage": start + len(page) < len(items),
                "hasPreviousPage": start > 0,
                "startCursor": str(start) if page else None,
                "endCursor": str(start + len(page) - 1) if page else None,
            },
        }


def _in_bulk(info: Any) -> bool:
    """Whether the field runs inside a bulk operation, where Shopify pages connections itself."""
    return isinstance(info.context, dict) and bool(info.context.get("bulk"))


@dataclasses.dataclass
class CollectionRecord:
    id: str
    handle: str
    title: str


class BulkOperationRecord:
    """A bulk query: CREATED, then RUNNING at the first status read, then COMPLETED (or the scripted end)
    after `running_polls` more reads. The JSONL is written when it completes."""

    def __init__(self, *, gid: str, query: str, document: Any, group_objects: bool, running_polls: int,
                 fail_code: str | None, created_at: str) -> None:
        self.id = gid
        self.query = query
        self.document = document
        self.group_objects = group_objects
        self.running_polls = running_polls
        self.fail_code = fail_code
        self.type = "QUERY"
        self.status = "CREATED"
        self.createdAt = created_at
        self.completedAt: str | None = None
        self.errorCode: str | None = None
        self.objectCount = 0
        self.rootObjectCount = 0
        self.fileSize: int | None = None
        self.url: str | None = None
        self.partialDataUrl: str | None = None
        self.polls = 0


class _Resolvers:
    """The root value: one method per root field (graphql-core's default resolver calls them)."""

    def __init__(self, fake: FakeShopify) -> None:
        self.fake = fake

    # queries

    def node(self, info: Any, id: str) -> Any:  # noqa: A002
        fake = self.fake
        with fake._lock:
            if id.startswith(PRODUCT_GID):
                return fake.products.get(id)
            if id.startswith(BULK_GID):
                operation = fake.bulk_operations.get(id)
                if operation is not None:
                    fake._poll_bulk(operation)
                return operation
            if id.startswith(COLLECTION_GID):
                return fake.collections.get(id)
            return fake.files.get(id)

    def products(self, info: Any, first: int | None = None, after: str | None = None,
                 query: str | None = None) -> dict[str, Any]:
        if first is None and not _in_bulk(info):
            raise GraphQLError("you must provide one of first or last")
        fake = self.fake
        with fake._lock:
            items = [p for p in fake.products.values() if fake._matches(p, query or "")]
        start = int(after) + 1 if after else 0
        page = items[start:] if _in_bulk(info) else items[start:start + min(first or 250, 250)]
        return {
            "nodes": page,
            "edges": [{"cursor": str(start + i), "node": p} for i, p in enumerate(page)],
            "pageInfo": {"hasNextPage": start + len(page) < len(items), "hasPreviousPage": start > 0,
                         "startCursor": str(start) if page else None,
                         "endCursor": str(start + len(page) - 1) if page else None},
        }

    def collectionByIdentifier(self, info: Any, identifier: dict[str, Any]) -> Any:  # noqa: N802
        with self.fake._lock:
            for collection in self.fake.collections.values():
                if identifier.get("id") == collection.id or identifier.get("handle") == collection.handle:
                    return collection
        return None

    def currentBulkOperation(self, info: Any, type: str = "QUERY") -> Any:  # noqa: N802, A002
        fake = self.fake
        with fake._lock:
            operations = [op for op in fake.bulk_operations.values() if op.type == type]
            if not operations:
                return None
            fake._poll_bulk(operations[-1])
            return operations[-1]

    def product(self, info: Any, id: str) -> ProductRecord | None:  # noqa: A002
        with self.fake._lock:
            return self.fake.products.get(id)

    # mutations

    def stagedUploadsCreate(self, info: Any, input: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N802, A002
        fake = self.fake
        targets = []
        with fake._lock:
            for item in input:
                target_id = f"t{next(fake._ids)}"
                method = item.get("httpMethod", "PUT")
                key = f"tmp/{target_id}/{item['filename']}"
                parameters = [
                    {"name": "Content-Type", "value": item["mimeType"]},
                    {"name": "success_action_status", "value": "201"},
                    {"name": "acl", "value": "private"},
                    {"name": "key", "value": key},
                    {"name": "x-goog-date", "value": "20261101T000000Z"},
                    {"name": "x-goog-credential", "value": "fake-bucket@shopify/20261101/auto/storage/goog4_request"},
                    {"name": "x-goog-algorithm", "value": "GOOG4-RSA-SHA256"},
                    {"name": "x-goog-signature", "value": f"sig{target_id}"},
                    {"name": "policy", "value": "eyJmYWtlIjp0cnVlfQ=="},
                ] if method == "POST" else [
                    {"name": "content_type", "value": item["mimeType"]},
                    {"name": "acl", "value": "private"},
                ]
                resource_url = f"{fake.url}/staged-uploads/{target_id}/{item['filename']}"
                target = StagedTarget(id=target_id, filename=item["filename"], mime_type=item["mimeType"],
                                      http_method=method, parameters=parameters, resource_url=resource_url)
                fake.targets[target_id] = target
                targets.append({"url": f"{fake.url}/staged-uploads/{target_id}", "resourceUrl": resource_url,
                                "parameters": parameters})
        return {"stagedTargets": targets, "userErrors": []}

    def productUpdate(self, info: Any, product: dict[str, Any] | None = None,  # noqa: N802
                      media: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        fake = self.fake
        with fake._lock:
            scripted = fake._pop_user_errors("productUpdate")
            if scripted is not None:
                return {"product": None, "userErrors": scripted}
            record = fake.products.get((product or {}).get("id") or "")
            if record is None:
                return {"product": None, "userErrors": [{"field": ["id"], "message": "Product does not exist"}]}
            for item in media or []:
                source = item["originalSource"]
                target = next((t for t in fake.targets.values() if t.resource_url == source), None)
                if target is None or target.upload is None:
                    return {"product": None, "userErrors": [
                        {"field": ["media", "0", "originalSource"], "message": "Image URL is invalid"}]}
                fake.media_created += 1
                number = next(fake._ids)
                fail = fake._fail_media.popleft() if fake._fail_media else None
                record.media_list.append(MediaRecord(
                    gid=f"{MEDIA_GID}{number}", alt=item.get("alt"), filename=target.filename,
                    cdn_url=f"{fake.url}/cdn/files/{target.filename}?v={number}", status="PROCESSING",
                    polls_left=fake.ready_after_polls, fail_message=fail, data=target.upload.data))
                fake.files[f"{MEDIA_GID}{number}"] = record.media_list[-1]
        return {"product": record, "userErrors": []}

    def fileUpdate(self, info: Any, files: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N802
        fake = self.fake
        updated, errors = [], []
        with fake._lock:
            for i, item in enumerate(files):
                media = fake.files.get(item["id"])
                if media is None:
                    errors.append({"code": "FILE_DOES_NOT_EXIST", "field": ["files", str(i), "id"],
                                   "message": f"File id {item['id']} does not exist."})
                    continue
                if media.current_status != "READY":
                    errors.append({"code": "NON_READY_STATE", "field": ["files", str(i), "id"],
                                   "message": f"Non-ready files cannot be updated: {item['id']}"})
                    continue
                for product_id in item.get("referencesToRemove") or []:
                    product = fake.products.get(product_id)
                    if product is None:
                        errors.append({"code": "REFERENCE_TARGET_DOES_NOT_EXIST", "field": ["files", str(i)],
                                       "message": f"Product {product_id} does not exist."})
                        continue
                    product.media_list = [m for m in product.media_list if m.id != media.id]
                if item.get("alt") is not None:
                    media.alt = item["alt"]
                updated.append(media)
        return {"files": updated, "userErrors": errors}

    def webhookSubscriptionCreate(self, info: Any, topic: str,  # noqa: N802
                                  webhookSubscription: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        fake = self.fake
        with fake._lock:
            if (topic, webhookSubscription["uri"]) in {(w["topic"], w["uri"]) for w in fake.webhooks}:
                return {"webhookSubscription": None,
                        "userErrors": [{"field": ["webhookSubscription", "uri"],
                                        "message": "Address for this topic has already been taken"}]}
            subscription = {"id": f"gid://shopify/WebhookSubscription/{next(fake._ids)}", "topic": topic,
                            "uri": webhookSubscription["uri"]}
            fake.webhooks.append(subscription)
        return {"webhookSubscription": subscription, "userErrors": []}

    def bulkOperationRunQuery(self, info: Any, query: str,  # noqa: N802
                              groupObjects: bool = False) -> dict[str, Any]:  # noqa: N803
        fake = self.fake
        fake.bulk_queries.append(query)
        try:
            document = parse(query)
        except GraphQLError as exc:
            return {"bulkOperation": None, "userErrors": [
                {"code": "INVALID", "field": ["query"], "message": f"Invalid bulk query: {exc.message}"}]}
        problems = validate(SCHEMA, document)
        if problems:
            return {"bulkOperation": None, "userErrors": [
                {"code": "INVALID", "field": ["query"], "message": f"Invalid bulk query: {problems[0].message}"}]}
        with fake._lock:
            running = [op for op in fake.bulk_operations.values() if op.status in ("CREATED", "RUNNING")]
            if len(running) >= MAX_RUNNING_BULK_QUERIES:
                return {"bulkOperation": None, "userErrors": [
                    {"code": "LIMIT_REACHED", "field": None,
                     "message": "Bulk operations limit reached. Please try again later."}]}
            operation = BulkOperationRecord(
                gid=f"{BULK_GID}{next(fake._ids)}", query=query, document=document, group_objects=groupObjects,
                running_polls=fake.bulk_running_polls,
                fail_code=fake._bulk_failures.popleft() if fake._bulk_failures else None,
                created_at="2026-12-01T10:00:00Z")
            fake.bulk_operations[operation.id] = operation
        return {"bulkOperation": operation, "userErrors": []}

    def fileDelete(self, info: Any, fileIds: list[str]) -> dict[str, Any]:  # noqa: N802, N803
        fake = self.fake
        deleted, errors = [], []
        with fake._lock:
            for file_id in fileIds:
                if fake.files.pop(file_id, None) is None:
                    errors.append({"code": "FILE_DOES_NOT_EXIST", "field": ["fileIds"],
                                   "message": f"File id {file_id} does not exist."})
                    continue
                for product in fake.products.values():
                    product.media_list = [m for m in product.media_list if m.id != file_id]
                deleted.append(file_id)
        return {"deletedFileIds": deleted, "userErrors": errors}


def _resolve_type(value: Any, info: Any, abstract_type: Any) -> str:
    if isinstance(value, ProductRecord):
        return "Product"
    if isinstance(value, BulkOperationRecord):
        return "BulkOperation"
    if isinstance(value, CollectionRecord):
        return "Collection"
    return "MediaImage"


def _instant(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


SCHEMA = build_schema(SCHEMA_SDL)
for _name in ("Node", "Media", "File"):
    SCHEMA.get_type(_name).resolve_type = _resolve_type  # type: ignore[union-attr]


class FakeShopify(LoopbackFake):
    """The fake server. `start()`/`stop()` or a `with` block; `url` is `http://127.0.0.1:<port>`."""

    name = "fake Shopify"

    def __init__(self, *, shop_domain: str = "fake-shop.myshopify.com", access_token: str = "shpat_fake_token_1",
                 api_version: str = "2026-10", ready_after_polls: int = 1) -> None:
        super().__init__()
        self.handler = _Handler
        self.shop_domain = shop_domain
        self.access_token = access_token
        self.api_version = api_version
        self.ready_after_polls = ready_after_polls
        self.valid_tokens = {access_token}
        self.products: dict[str, ProductRecord] = {}
        self.files: dict[str, MediaRecord] = {}
        self.targets: dict[str, StagedTarget] = {}
        self.uploads: list[Upload] = []
        self.requests: list[RecordedRequest] = []
        self.media_created = 0
        self.bucket = dict(DEFAULT_BUCKET)
        self._ids = itertools.count(900_001)
        self._http_script: deque[tuple[int, dict[str, str]]] = deque()
        self._throttles = 0
        self._user_errors: dict[str, deque[list[dict[str, Any]]]] = {}
        self._fail_media: deque[str] = deque()
        self._resolvers = _Resolvers(self)
        # OAuth: codes the fake "authorize" page handed out, the app's credentials, subscriptions made.
        self.client_id, self.client_secret = "fake-client-id", "fake-client-secret"
        self.codes: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.refresh_token_lifetime_s = 7_776_000  # Shopify's refresh tokens last 90 days
        self.webhooks: list[dict[str, str]] = []
        # Bulk operations: their records, the bulk query texts received, results served for download.
        self.collections: dict[str, CollectionRecord] = {}
        self.bulk_operations: dict[str, BulkOperationRecord] = {}
        self.bulk_queries: list[str] = []
        self.bulk_results: dict[str, bytes] = {}
        self.bulk_running_polls = 1
        self._bulk_failures: deque[str | None] = deque()
        self._expired_results: set[str] = set()

    # addresses (start/stop/url come from LoopbackFake; `errors` also holds upload protocol violations)

    @property
    def graphql_path(self) -> str:
        return f"/admin/api/{self.api_version}/graphql.json"

    # the store

    def add_product(self, number: int, title: str = "Product", **fields: Any) -> str:
        """A product; `fields` are ProductRecord's (description_html, vendor, product_type, tags, status,
        created_at, updated_at as ISO 8601 text)."""
        with self._lock:
            record = ProductRecord(number, title, **fields)
            self.products[record.id] = record
            return record.id

    def add_catalog(self, count: int, *, images: int = 2, first_number: int = 10_001, **fields: Any) -> list[str]:
        """`count` products numbered from `first_number`, each with `images` READY merchant images, quickly
        (no HTTP). `fields` as add_product's, the same for all."""
        made = []
        with self._lock:
            for number in range(first_number, first_number + count):
                record = ProductRecord(number, f"Product {number}", **fields)
                self.products[record.id] = record
                for position in range(images):
                    media_number = next(self._ids)
                    filename = f"p{number}-{position}.jpg"
                    media = MediaRecord(gid=f"{MEDIA_GID}{media_number}", alt=f"Product {number} view {position}",
                                        filename=filename, cdn_url=f"{self.url}/cdn/files/{filename}?v=1",
                                        status="READY", image_id=f"{PRODUCT_IMAGE_GID}{media_number + 500_000}")
                    record.media_list.append(media)
                    self.files[media.id] = media
                made.append(record.id)
        return made

    def add_collection(self, handle: str, numbers: list[int], title: str = "") -> str:
        """A collection holding these products; returns its gid."""
        with self._lock:
            collection = CollectionRecord(id=f"{COLLECTION_GID}{next(self._ids)}", handle=handle,
                                          title=title or handle)
            self.collections[collection.id] = collection
            for number in numbers:
                self.products[f"{PRODUCT_GID}{number}"].collections.add(collection.id)
            return collection.id

    def add_merchant_media(self, number: int, *, alt: str = "", filename: str = "IMG_0001.jpg",
                           status: str = "READY") -> str:
        """A media the merchant uploaded themselves."""
        with self._lock:
            gid = f"{MEDIA_GID}{next(self._ids)}"
            media = MediaRecord(gid=gid, alt=alt, filename=filename, cdn_url=f"{self.url}/cdn/files/{filename}?v=1",
                                status=status)
            self.products[f"{PRODUCT_GID}{number}"].media_list.append(media)
            self.files[gid] = media
            return gid

    def product_media(self, number: int) -> list[MediaRecord]:
        with self._lock:
            return list(self.products[f"{PRODUCT_GID}{number}"].media_list)

    # scripts

    def throttle(self, n: int = 1) -> None:
        """The next n GraphQL requests are THROTTLED (HTTP 200)."""
        with self._lock:
            self._throttles += n

    def http_error(self, status: int, n: int = 1, *, retry_after: float | None = None) -> None:
        """The next n GraphQL requests get this HTTP status."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._http_script.extend([(status, headers)] * n)

    def user_errors(self, mutation: str, message: str, field: list[str] | None = None) -> None:
        """The next call of this mutation answers with this userError and does nothing."""
        with self._lock:
            self._user_errors.setdefault(mutation, deque()).append([{"field": field, "message": message}])

    def fail_next_bulk(self, error_code: str = "TIMEOUT") -> None:
        """The next bulk operation started ends FAILED with this errorCode (and a partialDataUrl)."""
        with self._lock:
            self._bulk_failures.append(error_code)

    def expire_bulk(self, operation_id: str) -> None:
        """The operation's result is gone: status EXPIRED, no url, and its download answers 403."""
        with self._lock:
            operation = self.bulk_operations[operation_id]
            operation.status, operation.url = "EXPIRED", None
            self._expired_results.add(operation_id.rsplit("/", 1)[-1])

    def expire_result_url(self, operation_id: str) -> None:
        """Only the signed download URL has expired (the operation still says COMPLETED)."""
        with self._lock:
            self._expired_results.add(operation_id.rsplit("/", 1)[-1])

    def fail_next_media(self, message: str = "Image could not be processed") -> None:
        with self._lock:
            self._fail_media.append(message)

    def rotate_token(self, new_token: str) -> None:
        """The shop now accepts only new_token (the old one expired)."""
        with self._lock:
            self.valid_tokens = {new_token}

    def _pop_user_errors(self, mutation: str) -> list[dict[str, Any]] | None:
        queue = self._user_errors.get(mutation)
        return queue.popleft() if queue else None

    # what happened

    @property
    def graphql_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_graphql]

    @property
    def token_refreshes(self) -> list[RecordedRequest]:
        """Requests to the token endpoint that asked for a refresh (granted or not)."""
        return [r for r in self.requests
                if r.path.startswith("/admin/oauth/access_token") and b"grant_type=refresh_token" in r.body]

    def operations(self) -> list[str]:
        """The root field of each GraphQL request that ran, in order."""
        names = []
        for request in self.graphql_requests:
            match = re.search(r"{\s*(\w+)", request.query)
            names.append(match.group(1) if match else "")
        return names

    # request handling

    def _cost(self, requested: float, *, throttled: bool) -> dict[str, Any]:
        available = 10.0 if throttled else self.bucket["maximumAvailable"] - requested
        return {"requestedQueryCost": requested, "actualQueryCost": None if throttled else requested,
                "throttleStatus": {"maximumAvailable": self.bucket["maximumAvailable"],
                                   "currentlyAvailable": available, "restoreRate": self.bucket["restoreRate"]}}

    def _poll_bulk(self, operation: BulkOperationRecord) -> None:
        """One status read of a bulk operation moves it along (the caller holds the lock)."""
        operation.polls += 1
        if operation.status == "CREATED":
            operation.status = "RUNNING"
        elif operation.status == "RUNNING" and operation.polls > operation.running_polls:
            self._finish_bulk(operation)

    def _finish_bulk(self, operation: BulkOperationRecord) -> None:
        token = operation.id.rsplit("/", 1)[-1]
        data, roots, objects = self._bulk_jsonl(operation)
        link = f"{self.url}/bulk-results/{token}.jsonl?X-Goog-Expires=604800&X-Goog-Signature=sig{token}"
        operation.completedAt = "2026-12-01T10:05:00Z"
        if operation.fail_code:
            # What was read before the failure: the first half of the lines.
            lines = data.splitlines(keepends=True)
            self.bulk_results[token] = b"".join(lines[: len(lines) // 2])
            operation.status, operation.errorCode = "FAILED", operation.fail_code
            operation.partialDataUrl = link if lines else None
            return
        self.bulk_results[token] = data
        operation.status = "COMPLETED"
        operation.objectCount, operation.rootObjectCount, operation.fileSize = objects, roots, len(data)
        operation.url = link if data else None  # Shopify gives no url when nothing matched

    def _bulk_jsonl(self, operation: BulkOperationRecord) -> tuple[bytes, int, int]:
        """The result file as Shopify writes it: one line per object, nested connections as lines with
        `__parentId`; grouped (children right below their parent) or, ungrouped, children after all roots."""
        result = execute(SCHEMA, operation.document, root_value=self._resolvers, context_value={"bulk": True})
        if result.errors:
            raise RuntimeError(f"bulk query failed in the fake: {result.errors}")
        roots: list[bytes] = []
        children: list[bytes] = []
        grouped: list[bytes] = []
        for connection in (result.data or {}).values():
            for edge in connection.get("edges") or []:
                node = dict(edge["node"])
                kids = []
                for key in list(node):
                    value = node[key]
                    if isinstance(value, dict) and "edges" in value:
                        del node[key]
                        kids.extend(json.dumps({**child["node"], "__parentId": node["id"]}).encode() + b"\n"
                                    for child in value["edges"])
                line = json.dumps(node).encode() + b"\n"
                roots.append(line)
                children.extend(kids)
                grouped.append(line)
                grouped.extend(kids)
        data = b"".join(grouped) if operation.group_objects else b"".join(roots + children)
        return data, len(roots), len(roots) + len(children)

    def _matches(self, product: ProductRecord, query: str) -> bool:
        """A little of Shopify's product search syntax: name:value terms, ANDed; created_at compares."""
        for name, comparator, raw in _SEARCH_TERM.findall(query):
            value = raw
            if raw[:1] in ("'", '"'):
                value = re.sub(r"\\(.)", r"\1", raw[1:-1])
            folded = value.casefold()
            if name == "product_type" and product.productType.casefold() != folded:
                return False
            if name == "vendor" and product.vendor.casefold() != folded:
                return False
            if name == "tag" and folded not in {t.casefold() for t in product.tags}:
                return False
            if name == "status" and product.status.casefold() != folded:
                return False
            if name == "collection_id" and f"{COLLECTION_GID}{value}" not in product.collections:
                return False
            if name == "created_at":
                created, since = _instant(product.createdAt), _instant(value)
                ok = {">=": created >= since, ">": created > since, "<=": created <= since,
                      "<": created < since, "": created == since}[comparator]
                if not ok:
                    return False
        return True

    def issue_code(self) -> str:
        """What Shopify's authorize page gives the browser to bring back to our callback."""
        code = f"code-{next(self._ids)}"
        self.codes.add(code)
        return code

    def _handle_token(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST /admin/oauth/access_token: a code (with expiring=1) or a refresh token for an expiring pair."""
        from urllib.parse import parse_qs

        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return 400, {"error": "invalid_client", "error_description": "Client credentials are invalid"}
        with self._lock:
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant"}
                self.refresh_tokens.discard(form["refresh_token"])  # replaced on every use
            elif form.get("code") in self.codes:
                self.codes.discard(form["code"])  # one use
            else:
                return 400, {"error": "invalid_request", "error_description": "The authorization code was not found"}
            token, refresh_token = f"shpat_{next(self._ids)}", f"shprt_{next(self._ids)}"
            # One offline token per app and shop: a new one revokes the previous token and refresh token.
            self.valid_tokens = {token}
            self.refresh_tokens = {refresh_token}
        answer: dict[str, Any] = {"access_token": token, "scope": "read_products,write_products,write_files"}
        if form.get("expiring") == "1" or form.get("grant_type") == "refresh_token":
            answer.update(expires_in=3600, refresh_token=refresh_token,
                          refresh_token_expires_in=self.refresh_token_lifetime_s)
        return 200, answer

    def _handle_graphql(self, recorded: RecordedRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            if self._http_script:
                status, headers = self._http_script.popleft()
                return status, {"errors": f"scripted HTTP {status}"}, headers
            if recorded.token not in self.valid_tokens:
                return 401, {"errors": "[API] Invalid API key or access token "
                                       "(unrecognized login or wrong password)"}, {}
        try:
            body = json.loads(recorded.body or b"{}")
        except ValueError:
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}, {}
        query, variables = body.get("query"), body.get("variables") or {}
        if not isinstance(query, str):
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}, {}
        recorded.query, recorded.variables = query, variables
        try:
            document = parse(query)
        except GraphQLError as exc:
            return 200, {"errors": [exc.formatted]}, {}
        problems = validate(SCHEMA, document)
        if problems:
            return 200, {"errors": [p.formatted for p in problems]}, {}
        requested = float(10 + 2 * query.count("{"))
        with self._lock:
            if self._throttles > 0:
                self._throttles -= 1
                return 200, {
                    "errors": [{"message": "Throttled", "extensions": {
                        "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/limits#rate-limits"}}],
                    "extensions": {"cost": self._cost(requested, throttled=True)},
                }, {}
        result = execute(SCHEMA, document, root_value=self._resolvers, variable_values=variables)
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        answer["extensions"] = {"cost": self._cost(requested, throttled=False)}
        return 200, answer, {}

    def _handle_bulk_download(self, recorded: RecordedRequest, path: str) -> tuple[int, bytes]:
        """The signed storage URL of a bulk result: no Shopify token wanted; 403 once expired."""
        if recorded.token:
            self.errors.append("the Shopify access token was sent to the bulk result's storage URL")
        token = path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        with self._lock:
            expired = token in self._expired_results
            data = self.bulk_results.get(token)
        if expired:
            return 403, (b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        if data is None:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>"
        return 200, data

    def _handle_upload(self, recorded: RecordedRequest, content_type: str) -> tuple[int, bytes]:
        target_id = recorded.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            target = self.targets.get(target_id)
        if target is None:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>"
        if recorded.token:
            self.errors.append("the Shopify access token was sent to the staged upload target")
            return 400, b"<Error><Code>InvalidArgument</Code><Message>Unexpected header</Message></Error>"
        if recorded.method != target.http_method:
            return 405, b"<Error><Code>MethodNotAllowed</Code></Error>"
        if not content_type.lower().startswith("multipart/form-data"):
            return 400, (b"<Error><Code>InvalidArgument</Code>"
                         b"<Message>POST requires multipart/form-data</Message></Error>")
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + recorded.body)
        order: list[str] = []
        fields: dict[str, str] = {}
        file_part = None
        for part in message.iter_parts():
            name = str(part.get_param("name", header="content-disposition") or "")
            order.append(name)
            if name == "file":
                file_part = part
            else:
                fields[name] = (part.get_payload(decode=True) or b"").decode("utf-8")
        expected = [p["name"] for p in target.parameters]
        if order != expected + ["file"]:
            self.errors.append(f"upload fields in the wrong order: {order}")
            return 400, (b"<Error><Code>InvalidArgument</Code>"
                         b"<Message>Bucket POST must contain a file field as the last field</Message></Error>")
        if any(fields.get(p["name"]) != p["value"] for p in target.parameters):
            return 403, (b"<Error><Code>AccessDenied</Code>"
                         b"<Message>Invalid policy document or request headers!</Message></Error>")
        assert file_part is not None
        upload = Upload(target_id=target_id, field_order=order, filename=file_part.get_filename() or "",
                        content_type=file_part.get_content_type(), data=file_part.get_payload(decode=True) or b"")
        with self._lock:
            target.upload = upload
            self.uploads.append(upload)
        return 201, b"<PostResponse><Key>" + target.filename.encode() + b"</Key></PostResponse>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeShopify/1.0"
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes; no delayed-ACK stalls
    server: Any  # loopback._Server, with .fake

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        recorded = RecordedRequest(method=method, path=self.path, headers=headers, body=body)
        with fake._lock:
            fake.requests.append(recorded)
        path = self.path.split("?", 1)[0]
        try:
            if method == "POST" and path == fake.graphql_path:
                status, answer, extra = fake._handle_graphql(recorded)
                self._send(status, json.dumps(answer).encode(), "application/json", extra)
            elif method == "POST" and path == "/admin/oauth/access_token":
                status, answer = fake._handle_token(body)
                self._send(status, json.dumps(answer).encode(), "application/json", {})
            elif method == "GET" and path.startswith("/bulk-results/"):
                status, data = fake._handle_bulk_download(recorded, path)
                self._send(status, data, "application/jsonl" if status == 200 else "application/xml", {})
            elif path.startswith("/staged-uploads/") and method in ("POST", "PUT"):
                status, data = fake._handle_upload(recorded, self.headers.get("content-type", ""))
                self._send(status, data, "application/xml", {})
            else:
                status = 404
                self._send(404, b'{"errors":"Not Found"}', "application/json", {})
        except Exception:
            fake.errors.append(traceback.format_exc())
            status = 500
            self._send(500, b'{"errors":"Internal error in the fake"}', "application/json", {})
        recorded.status = status

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
