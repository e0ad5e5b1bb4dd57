"""A fake WooCommerce + WordPress REST API on loopback, written from the public references, for connector tests.

    with FakeWooCommerce() as shop:
        product = shop.add_product(images=[shop.add_media("front.jpg", b"...")])
        store = WooCommerceStore(base_url=shop.url, consumer_key=shop.consumer_key, ...)

Routes (WooCommerce REST v3 products controller `set_product_images`, WordPress `WP_REST_Attachments_Controller`):

- `POST /wp-json/wp/v2/media`: raw body, `Content-Type` and `Content-Disposition: attachment; filename=...`;
  401 `rest_cannot_create` without credentials, 400 `rest_upload_no_data` / `rest_upload_no_content_type` /
  `rest_upload_no_content_disposition` as WordPress does; the file name made unique with `-1`, `-2`, ...;
  answers 201 with `id`, `title {raw, rendered}`, `alt_text`, `mime_type`, `source_url`, ... Query parameters
  `title` and `alt_text` are taken too.
- `POST /wp-json/wp/v2/media/<id>`: JSON `alt_text`, `title`, `caption`; `GET /wp-json/wp/v2/media/<id>`.
- `GET /wp-json/wp/v2/media?search=&per_page=&page=`: title or file name contains the term (WordPress adds
  file names to attachment searches).
- `GET/PUT /wp-json/wc/v3/products/<id>`: `images` REPLACES the product's images; `{"id"}` keeps an attachment
  (400 `woocommerce_product_invalid_image_id` when it is not an image), `{"src"}` is "downloaded" (the URL is
  recorded in `downloads`) into a new attachment named after the URL; non-empty `alt` and `name` update the
  attachment; `position` or list order sorts; index 0 is the featured image; 404 `woocommerce_rest_product_invalid_id`.
- `GET/POST /wp-json/wc/v3/webhooks`, `PUT /wp-json/wc/v3/webhooks/<id>`.

Credentials: wc/ routes take the consumer key and secret (query parameters or Basic) or the application password
(WordPress authenticates every route); wp/v2 routes take only the application password (Basic, spaces ignored):
a consumer key there is an unknown user name, 401 `invalid_username`, as since WooCommerce 11.1.

Scripted failures: `fail_next(n, status=500)`, `fail_next(1, status=429, retry_after="7")`, optionally only for
paths starting with `path_prefix` and one `method`. Every request is recorded in `requests` (method, path, query,
headers, body, status); `uploads()` lists the raw media uploads. `errors` keeps tracebacks of bugs in the fake itself.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .loopback import LoopbackFake

UPLOADS = "/wp-content/uploads/2026/11/"
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


@dataclasses.dataclass
class RecordedRequest:
    """What one call sent, and the status the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclasses.dataclass
class Media:
    """One attachment in the media library."""

    id: int
    file_name: str
    mime_type: str
    data: bytes | None  # None for an image the store "downloaded" from a src URL
    title: str
    alt_text: str = ""
    caption: str = ""
    downloaded_from: str = ""


@dataclasses.dataclass
class Product:
    id: int
    name: str
    image_ids: list[int] = dataclasses.field(default_factory=list)
    status: str = "publish"
    description: str = ""
    date_created_gmt: str = "2026-01-05T10:00:00"
    date_modified_gmt: str = "2026-01-06T10:00:00"
    tag_ids: list[int] = dataclasses.field(default_factory=list)
    category_ids: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Failure:
    status: int
    retry_after: str | None
    path_prefix: str
    method: str | None


class _Error(Exception):
    """A WordPress REST error: {"code", "message", "data": {"status"}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeWooCommerce(LoopbackFake):
    """The fake shop. A `with` block or `start()`/`stop()`; `url` is `http://127.0.0.1:<port>`."""

    name = "fake WooCommerce"

    def __init__(self, *, consumer_key: str = "ck_fake0123456789", consumer_secret: str = "cs_fakesecret9876",
                 wp_user: str = "shopadmin", wp_app_password: str = "abcd EFGH 1234 ijkl MNOP 5678") -> None:
        super().__init__()
        self.handler = _Handler
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.wp_user, self.wp_app_password = wp_user, wp_app_password
        self.products: dict[int, Product] = {}
        self.media: dict[int, Media] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.terms: dict[str, dict[int, dict[str, Any]]] = {"tags": {}, "categories": {}}
        self.downloads: list[str] = []  # src URLs the store was asked to download
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._ids = itertools.count(100)

    # setting the scene

    def add_media(self, file_name: str, data: bytes = b"merchant image", *, alt: str = "",
                  title: str | None = None) -> int:
        """An attachment of the merchant's (or anyone's) in the media library; returns its id."""
        with self._lock:
            media = Media(id=next(self._ids), file_name=self._unique_name(file_name), mime_type=_mime(file_name),
                          data=data, title=title if title is not None else file_name.rsplit(".", 1)[0], alt_text=alt)
            self.media[media.id] = media
            return media.id

    def add_product(self, name: str = "Blue mug", images: list[int] | None = None, **fields: Any) -> int:
        """A product; `fields` are Product's (status, description, date_created_gmt, tag_ids, category_ids...)."""
        with self._lock:
            product = Product(id=next(self._ids), name=name, image_ids=list(images or []), **fields)
            self.products[product.id] = product
            return product.id

    def add_term(self, taxonomy: str, name: str, slug: str | None = None) -> int:
        """A product tag (`tags`) or category (`categories`); returns its id."""
        with self._lock:
            term_id = next(self._ids)
            self.terms[taxonomy][term_id] = {"id": term_id, "name": name,
                                             "slug": slug or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")}
            return term_id

    def add_catalog(self, count: int, *, images: int = 1, **fields: Any) -> list[int]:
        """`count` products, each with `images` images of its own, quickly (no HTTP); `fields` as add_product's."""
        made = []
        with self._lock:
            for n in range(count):
                image_ids = []
                for position in range(images):
                    media = Media(id=next(self._ids), file_name=f"catalog-{n}-{position}.jpg", mime_type="image/jpeg",
                                  data=b"jpeg", title=f"catalog-{n}-{position}", alt_text=f"view {position}")
                    self.media[media.id] = media
                    image_ids.append(media.id)
                product = Product(id=next(self._ids), name=f"Product {n}", image_ids=image_ids, **fields)
                self.products[product.id] = product
                made.append(product.id)
        return made

    def fail_next(self, n: int = 1, *, status: int = 500, retry_after: str | None = None,
                  path_prefix: str = "/wp-json/", method: str | None = None) -> None:
        """The next n requests under path_prefix (with that method, if given) answer `status`, plus Retry-After."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, path_prefix, method) for _ in range(n))

    def images_of(self, product_id: int) -> list[int]:
        with self._lock:
            return list(self.products[product_id].image_ids)

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def uploads(self) -> list[RecordedRequest]:
        """The raw media uploads (POST /wp-json/wp/v2/media), not the follow-up edits of a media item."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path == "/wp-json/wp/v2/media"]

    # the API

    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path).rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        record = RecordedRequest(method, path, query, headers, body)
        with self._lock:
            self.requests.append(record)
            failure = next((f for f in self._failures
                            if path.startswith(f.path_prefix) and f.method in (None, method)), None)
            if failure is not None:
                self._failures.remove(failure)
        try:
            if failure is not None:
                extra = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
                raise _ScriptedError(failure.status, extra)
            with self._lock:
                routed = self._route(method, path, query, headers, body)
            answer: tuple[int, Any, dict[str, str]] = routed if len(routed) == 3 else (*routed, {})  # type: ignore[assignment]
        except _ScriptedError as exc:
            answer = (exc.status, {"code": "scripted_failure", "message": f"Scripted HTTP {exc.status}.",
                                   "data": {"status": exc.status}}, exc.headers)
        except _Error as exc:
            answer = (exc.status, {"code": exc.code, "message": exc.message, "data": {"status": exc.status}}, {})
        record.status = answer[0]
        return answer

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
        if path.startswith("/wp-json/wc/v3/"):
            self._check_wc_auth(method, query, headers)
            rest = path[len("/wp-json/wc/v3/"):]
            if rest == "products" and method == "GET":
                return self._list_products(query)
            if rest in ("products/tags", "products/categories") and method == "GET":
                term = query.get("search", "").lower()
                terms = [t for t in self.terms[rest.split("/")[1]].values()
                         if term in t["name"].lower() or term in t["slug"]]
                return 200, _page(terms, query)
            if match := re.fullmatch(r"products/(\d+)", rest):
                product = self.products.get(int(match[1]))
                if product is None:
                    raise _Error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                if method == "GET":
                    return 200, self._product_json(product)
                if method in ("PUT", "POST", "PATCH"):
                    return 200, self._update_product(product, _json_body(body))
            if rest == "webhooks":
                if method == "GET":
                    return 200, _page(list(self.webhooks.values()), query)
                if method == "POST":
                    return 201, self._create_webhook(_json_body(body))
            if match := re.fullmatch(r"webhooks/(\d+)", rest):
                hook = self.webhooks.get(int(match[1]))
                if hook is None:
                    raise _Error(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
                if method in ("PUT", "POST", "PATCH"):
                    hook.update({k: v for k, v in _json_body(body).items() if k in ("name", "status", "delivery_url",
                                                                                    "topic", "secret")})
                return 200, _public_hook(hook)
            raise _Error(404, "rest_no_route", "No route was found matching the URL and request method.")
        if path.startswith("/wp-json/wp/v2/"):
            authed = self._check_wp_auth(headers)
            rest = path[len("/wp-json/wp/v2/"):]
            if rest == "media":
                if method == "POST":
                    if not authed:
                        raise _Error(401, "rest_cannot_create",
                                     "Sorry, you are not allowed to create posts as this user.")
                    return 201, self._upload(query, headers, body)
                if method == "GET":
                    return 200, _page([self._media_json(m) for m in self._search(query.get("search", ""))], query)
            if match := re.fullmatch(r"media/(\d+)", rest):
                media = self.media.get(int(match[1]))
                if media is None:
                    raise _Error(404, "rest_post_invalid_id", "Invalid post ID.")
                if method == "GET":
                    return 200, self._media_json(media)
                if method in ("POST", "PUT", "PATCH"):
                    if not authed:
                        raise _Error(401, "rest_cannot_edit", "Sorry, you are not allowed to edit this post.")
                    fields = _json_body(body) if body else query
                    if "alt_text" in fields:
                        media.alt_text = str(fields["alt_text"])
                    if "title" in fields:
                        media.title = str(fields["title"])
                    if "caption" in fields:
                        media.caption = str(fields["caption"])
                    return 200, self._media_json(media)
            raise _Error(404, "rest_no_route", "No route was found matching the URL and request method.")
        raise _Error(404, "rest_no_route", "No route was found matching the URL and request method.")

    # credentials

    def _basic(self, headers: dict[str, str]) -> tuple[str, str] | None:
        value = headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password

    def _app_password_ok(self, user: str, password: str) -> bool:
        if user != self.wp_user:
            raise _Error(401, "invalid_username", "Unknown username. Check again or try your email address.")
        if re.sub(r"[^a-z\d]", "", password, flags=re.I) != re.sub(r"[^a-z\d]", "", self.wp_app_password, flags=re.I):
            raise _Error(401, "incorrect_password", "The provided password is an invalid application password.")
        return True

    def _check_wc_auth(self, method: str, query: dict[str, str], headers: dict[str, str]) -> None:
        basic = self._basic(headers)
        key, secret = query.get("consumer_key"), query.get("consumer_secret")
        if key is None and basic is not None and basic[0].startswith("ck_"):
            key, secret = basic
        if key is not None:
            if key != self.consumer_key:
                raise _Error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
            if secret != self.consumer_secret:
                raise _Error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
            return
        if basic is not None and self._app_password_ok(*basic):
            return
        if method == "GET":
            raise _Error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource.")
        raise _Error(401, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.")

    def _check_wp_auth(self, headers: dict[str, str]) -> bool:
        """True for the application password; False for no credentials (public reads only); 401 otherwise.

        Consumer keys do not authenticate wp/v2 routes (WooCommerce 11.1): `ck_...` is an unknown user.
        """
        basic = self._basic(headers)
        return basic is not None and self._app_password_ok(*basic)

    # media

    def _unique_name(self, file_name: str) -> str:
        """wp_unique_filename: name.ext, then name-1.ext, name-2.ext ..."""
        stem, dot, ext = file_name.rpartition(".")
        if not dot:
            stem, ext = file_name, ""
        taken = {m.file_name for m in self.media.values()}
        candidate, n = file_name, 0
        while candidate in taken:
            n += 1
            candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        return candidate

    def _upload(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> dict[str, Any]:
        if not body:
            raise _Error(400, "rest_upload_no_data", "No data supplied.")
        content_type = headers.get("content-type", "")
        if not content_type:
            raise _Error(400, "rest_upload_no_content_type", "No Content-Type supplied.")
        disposition = headers.get("content-disposition", "")
        match = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", disposition, flags=re.I)
        if not match:
            raise _Error(400, "rest_upload_no_content_disposition", "No Content-Disposition supplied.")
        file_name = _sanitize(match[1])
        if file_name.rsplit(".", 1)[-1].lower() not in IMAGE_TYPES:
            raise _Error(400, "rest_upload_sideload_error", "Sorry, you are not allowed to upload this file type.")
        name = self._unique_name(file_name)
        media = Media(id=next(self._ids), file_name=name, mime_type=content_type.split(";")[0].strip(), data=body,
                      title=query.get("title") or name.rsplit(".", 1)[0], alt_text=query.get("alt_text", ""))
        self.media[media.id] = media
        return self._media_json(media)

    def _search(self, term: str) -> list[Media]:
        term = term.lower()
        found = [m for m in self.media.values() if not term or term in m.title.lower() or term in m.file_name.lower()]
        return sorted(found, key=lambda m: -m.id)  # WordPress lists newest first by default

    def _media_json(self, media: Media) -> dict[str, Any]:
        source_url = self.url + UPLOADS + media.file_name
        return {
            "id": media.id, "date": "2026-11-20T10:00:00", "slug": media.file_name.rsplit(".", 1)[0].lower(),
            "status": "inherit", "type": "attachment", "link": source_url,
            "title": {"raw": media.title, "rendered": media.title},
            "caption": {"raw": media.caption, "rendered": media.caption},
            "alt_text": media.alt_text, "media_type": "image" if media.mime_type.startswith("image/") else "file",
            "mime_type": media.mime_type, "media_details": {}, "post": None, "source_url": source_url,
        }

    # products

    def _product_json(self, product: Product) -> dict[str, Any]:
        images = []
        for image_id in product.image_ids:
            media = self.media[image_id]
            images.append({"id": media.id, "date_created": "2026-11-20T10:00:00",
                           "src": self.url + UPLOADS + media.file_name, "name": media.title, "alt": media.alt_text})
        def terms(taxonomy: str, ids: list[int]) -> list[dict[str, Any]]:
            return [{k: self.terms[taxonomy][i][k] for k in ("id", "name", "slug")} for i in ids]

        return {"id": product.id, "name": product.name, "type": "simple", "status": product.status,
                "description": product.description, "short_description": "",
                "date_created_gmt": product.date_created_gmt, "date_modified_gmt": product.date_modified_gmt,
                "categories": terms("categories", product.category_ids), "tags": terms("tags", product.tag_ids),
                "images": images}

    def _list_products(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """GET /wc/v3/products: status (default any), after (+ dates_are_gmt), tag, category, orderby id or date,
        order, per_page (at most 100), page; X-WP-Total and X-WP-TotalPages as WordPress sends them."""
        per_page = int(query.get("per_page") or 10)
        if not 1 <= per_page <= 100:
            raise _Error(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        items = list(self.products.values())
        status = query.get("status", "any")
        if status != "any":
            items = [p for p in items if p.status in status.split(",")]
        if "after" in query:
            if query.get("dates_are_gmt") != "true":
                self.errors.append("after sent without dates_are_gmt: it would be read in the site's time zone")
            items = [p for p in items if p.date_created_gmt > query["after"]]
        if "tag" in query:
            items = [p for p in items if int(query["tag"]) in p.tag_ids]
        if "category" in query:
            items = [p for p in items if int(query["category"]) in p.category_ids]
        key = query.get("orderby", "date")
        items.sort(key=(lambda p: p.id) if key == "id" else (lambda p: (p.date_created_gmt, p.id)),
                   reverse=query.get("order", "desc") == "desc")
        total = len(items)
        pages = (total + per_page - 1) // per_page
        page = int(query.get("page") or 1)
        if page > max(pages, 1):
            raise _Error(400, "rest_post_invalid_page_number",
                         "The page number requested is larger than the number of pages available.")
        chosen = items[(page - 1) * per_page: page * per_page]
        return 200, [self._product_json(p) for p in chosen], {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}

    def _update_product(self, product: Product, fields: dict[str, Any]) -> dict[str, Any]:
        if "images" in fields:
            images = fields["images"]
            if not isinstance(images, list):
                raise _Error(400, "rest_invalid_param", "Invalid parameter(s): images")
            positions: dict[int, int] = {}
            for index, image in enumerate(i for i in images if i):
                attachment_id = int(image.get("id") or 0)
                if attachment_id == 0 and image.get("src"):
                    attachment_id = self._download(str(image["src"]))
                media = self.media.get(attachment_id)
                if media is None or not media.mime_type.startswith("image/"):
                    raise _Error(400, "woocommerce_product_invalid_image_id",
                                 f"#{attachment_id} is an invalid image ID.")
                positions[attachment_id] = int(image.get("position", index))
                if image.get("alt"):
                    media.alt_text = str(image["alt"])
                if image.get("name"):
                    media.title = str(image["name"])
            product.image_ids = sorted(positions, key=lambda i: positions[i])  # stable: ties keep list order
        if "name" in fields:
            product.name = str(fields["name"])
        return self._product_json(product)

    def _download(self, src: str) -> int:
        """wc_rest_upload_image_from_url: the file is named after the URL's last path segment."""
        self.downloads.append(src)
        file_name = _sanitize(unquote(urlsplit(src).path.rsplit("/", 1)[-1])) or "image"
        if file_name.rsplit(".", 1)[-1].lower() not in IMAGE_TYPES:
            raise _Error(400, "woocommerce_product_image_upload_error",
                         "Error getting remote image " + src + ". Error: Sorry, this file type is not permitted.")
        media = Media(id=next(self._ids), file_name=self._unique_name(file_name), mime_type=_mime(file_name),
                      data=None, title=file_name.rsplit(".", 1)[0], downloaded_from=src)
        self.media[media.id] = media
        return media.id

    # webhooks

    def _create_webhook(self, fields: dict[str, Any]) -> dict[str, Any]:
        for required in ("topic", "delivery_url"):
            if not fields.get(required):
                raise _Error(400, "rest_missing_callback_param", f"Missing parameter(s): {required}")
        hook = {"id": next(self._ids), "name": fields.get("name", ""), "status": fields.get("status", "active"),
                "topic": fields["topic"], "resource": fields["topic"].split(".")[0],
                "event": fields["topic"].split(".")[-1], "delivery_url": fields["delivery_url"],
                "secret": fields.get("secret", ""), "api_version": "wp_api_v3",
                "date_created": "2026-11-20T10:00:00"}
        self.webhooks[hook["id"]] = hook
        return _public_hook(hook)


class _ScriptedError(Exception):
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status, self.headers = status, headers


def _public_hook(hook: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hook.items() if k != "secret"}


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise _Error(400, "rest_invalid_json", "Invalid JSON body passed.") from None
    if not isinstance(value, dict):
        raise _Error(400, "rest_invalid_json", "Invalid JSON body passed.")
    return value


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    per_page = max(1, min(100, int(query.get("per_page") or 10)))
    page = max(1, int(query.get("page") or 1))
    return items[(page - 1) * per_page: page * per_page]


def _sanitize(file_name: str) -> str:
    """A little of sanitize_file_name: spaces to dashes, odd characters dropped."""
    return re.sub(r"[^A-Za-z0-9._-]", "", file_name.strip().replace(" ", "-"))


def _mime(file_name: str) -> str:
    return IMAGE_TYPES.get(file_name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeWooCommerce = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload, extra = fake.handle(self.command, self.path, headers, body)
        except Exception:  # a bug in the fake: keep it for the test, answer 500
            fake.errors.append(traceback.format_exc())
            status, extra = 500, {}
            payload = {"code": "fake_bug", "message": "bug in the fake", "data": {"status": 500}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

    def log_message(self, *_args: object) -> None:
        pass
