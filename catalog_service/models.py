"""The database: shops, their products and images, renders and what they made."""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .security import EncryptedText


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[Any]: JSON,
        str: String(255),
    }


# Every table whose integer id travels in a link, a cookie or an API answer is created AUTOINCREMENT on SQLite,
# which otherwise hands a deleted row's id to the next row. PostgreSQL's sequences never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def new_shop_uid() -> str:
    return secrets.token_hex(16)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as the lowercase value in a plain string column: readable in SQL, no PostgreSQL enum type to migrate.
    return Enum(cls, values_callable=lambda e: [m.value for m in e], native_enum=False, length=32)


class Platform(str, enum.Enum):
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"
    GENERIC = "generic"
    FOLDER = "folder"


class RenderStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # the cutout and some scenes were made, others failed
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Its cutout and white variant are made and its scenes wait in an OpenAI batch (BatchScene rows): not finished,
    # and no worker holds it, so the sweeper leaves it alone and jobs/batches.py ends it.
    WAITING = "waiting"

    @property
    def is_finished(self) -> bool:
        return self in {RenderStatus.SUCCEEDED, RenderStatus.PARTIAL, RenderStatus.FAILED, RenderStatus.CANCELLED}


class AssetKind(str, enum.Enum):
    CUTOUT = "cutout"
    WHITE = "white"
    SCENE = "scene"


class PushStatus(str, enum.Enum):
    PENDING = "pending"
    PUSHED = "pushed"
    FAILED = "failed"
    HELD = "held"  # review mode: waits for the merchant
    REMOVED = "removed"  # replaced by a newer render's asset and taken off the product
    REJECTED = "rejected"  # the merchant said no: never pushed (or taken off again)
    REMOVING = "removing"  # rejected after it was pushed: a job is taking it off the product


class Shop(TimestampMixin, Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[Platform] = mapped_column(_enum(Platform))
    domain: Mapped[str]
    name: Mapped[str] = mapped_column(default="")
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Deferred: decrypting costs CPU on every load, and most loads (a Shopify webhook) need neither.
    webhook_secret: Mapped[str | None] = mapped_column(EncryptedText(1024), deferred=True)
    access_token: Mapped[str | None] = mapped_column(EncryptedText(2048), deferred=True)
    # Other platform credentials as encrypted JSON (WooCommerce: consumer key/secret, WordPress app password).
    credentials: Mapped[str | None] = mapped_column(EncryptedText(4096), deferred=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    # Where the shop's API lives when it is not the platform's usual address (tests, staging).
    api_base_url: Mapped[str | None] = mapped_column(String(512))
    # A generic platform's endpoint that hears about ready assets (stores/callback.py).
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    # Random, of this row alone: sign-in links and sessions carry it, so a shop that later gets the same id
    # (a restored backup, a reset sequence) is never opened by a deleted shop's cookie or link.
    uid: Mapped[str] = mapped_column(String(32), default=new_shop_uid)

    __table_args__ = (UniqueConstraint("platform", "domain", name="uq_shops_platform_domain"),
                      UniqueConstraint("uid", name="uq_shops_uid"), NEVER_REUSE_IDS)


class Product(TimestampMixin, Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(64))  # the shop's own product id
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    product_type: Mapped[str] = mapped_column(default="")
    vendor: Mapped[str] = mapped_column(default="")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    deleted: Mapped[bool] = mapped_column(default=False)
    # The newest `updated_at` a signed webhook body gave (UTC); an older body is a replay and is ignored.
    source_updated_at: Mapped[dt.datetime | None] = mapped_column()

    images: Mapped[list[SourceImage]] = relationship(
        back_populates="product", order_by="SourceImage.position", cascade="all, delete-orphan"
    )

    __table_args__ = (UniqueConstraint("shop_id", "external_id", name="uq_products_shop_external"), NEVER_REUSE_IDS)


class SourceImage(TimestampMixin, Base):
    __tablename__ = "source_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(64), default="")
    src: Mapped[str] = mapped_column(Text)
    alt: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=0)

    product: Mapped[Product] = relationship(back_populates="images")

    __table_args__ = (Index("ix_source_images_product", "product_id"), NEVER_REUSE_IDS)


class Render(TimestampMixin, Base):
    """One run of the pipeline for one product. Written before its job is enqueued."""

    __tablename__ = "renders"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    status: Mapped[RenderStatus] = mapped_column(_enum(RenderStatus), default=RenderStatus.QUEUED)
    trigger: Mapped[str] = mapped_column(String(32), default="webhook")  # webhook | manual | demo
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # presets, prompt, cutout on/off
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    errors: Mapped[list[Any]] = mapped_column(default=list)  # per-scene failures: {"preset", "reason", "message"}
    heartbeat_at: Mapped[dt.datetime | None]
    next_attempt_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stage -> milliseconds
    # The photo this render was made from, kept when the product's photo later changes: its address, and a
    # small copy in the asset storage (the shop may delete the file). None on renders made before these existed.
    source_url: Mapped[str | None] = mapped_column(Text)
    source_thumb_key: Mapped[str | None] = mapped_column(String(255))

    product: Mapped[Product] = relationship()
    assets: Mapped[list[Asset]] = relationship(back_populates="render", order_by="Asset.id")

    __table_args__ = (Index("ix_renders_shop_status", "shop_id", "status"), Index("ix_renders_product", "product_id"),
                      NEVER_REUSE_IDS)


class Asset(TimestampMixin, Base):
    """One output file of a render."""

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    render_id: Mapped[int] = mapped_column(ForeignKey("renders.id", ondelete="CASCADE"))
    kind: Mapped[AssetKind] = mapped_column(_enum(AssetKind))
    preset: Mapped[str] = mapped_column(String(64), default="")  # scene preset name; "" for cutouts
    storage_key: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int]
    height: Mapped[int]
    bytes: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    push_status: Mapped[PushStatus] = mapped_column(_enum(PushStatus), default=PushStatus.PENDING)
    push_attempts: Mapped[int] = mapped_column(default=0)
    push_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(255))  # the shop's id for it once pushed
    external_url: Mapped[str | None] = mapped_column(Text)
    pushed_at: Mapped[dt.datetime | None]
    # Refinement keeps every version: a refined scene points at the one it was made from.
    parent_asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(default=1)
    instruction: Mapped[str | None] = mapped_column(Text)
    # A paid scene's estimate before the call, shown beside what it cost; None for free assets.
    estimate_usd: Mapped[float | None]
    # How faithful the product is in a scene: {"delta_e": mean colour difference, "ssim": structure, "passed"}.
    fidelity: Mapped[dict[str, Any] | None]
    # The IPTC Digital Source Type the file is marked with; "" for images no generative model touched.
    source_type: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Why a scene waits for review even in auto mode ("the product changed: colour difference 9.3").
    hold_reason: Mapped[str | None] = mapped_column(Text)

    render: Mapped[Render] = relationship(back_populates="assets")

    __table_args__ = (UniqueConstraint("render_id", "kind", "preset", name="uq_assets_render_kind_preset"),
                      NEVER_REUSE_IDS)


class ReferenceImage(TimestampMixin, Base):
    __tablename__ = "reference_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(default="")
    storage_key: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int]
    height: Mapped[int]

    __table_args__ = NEVER_REUSE_IDS


class Delivery(Base):
    """One received webhook. The unique key is what makes a retried delivery a no-op."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform: Mapped[Platform] = mapped_column(_enum(Platform))
    delivery_key: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    product_external_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32), default="accepted")  # accepted | ignored | render
    render_id: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("shop_id", "delivery_key", name="uq_deliveries_shop_key"), NEVER_REUSE_IDS)


class UsageRecord(Base):
    """One priced call to a paid provider."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    render_id: Mapped[int | None] = mapped_column(ForeignKey("renders.id", ondelete="SET NULL"))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    quality: Mapped[str] = mapped_column(String(16), default="")
    input_text_tokens: Mapped[int] = mapped_column(default=0)
    input_image_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    size: Mapped[str] = mapped_column(String(16), default="", server_default="")  # WxH asked of the model
    estimate_usd: Mapped[float | None]  # what was estimated before the call, for calibrating the next estimates
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_usage_shop_created", "shop_id", "created_at"), NEVER_REUSE_IDS)


class BackfillStatus(str, enum.Enum):
    COLLECTING = "collecting"  # reading the shop's catalog (a Shopify bulk operation, WooCommerce pages)
    READY = "ready"  # collected and estimated: waits for start (a dry run stops here)
    RUNNING = "running"
    PAUSED = "paused"  # by the merchant, or by the monthly budget (pause_reason says which)
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the catalog could not be read (error says why)

    @property
    def is_finished(self) -> bool:
        return self in (BackfillStatus.DONE, BackfillStatus.CANCELLED, BackfillStatus.FAILED)


class BackfillItemStatus(str, enum.Enum):
    PENDING = "pending"  # waits for the feeder
    QUEUED = "queued"  # its render exists and is queued or running
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # already done with the same photos and settings, or no photo to work from


class Backfill(TimestampMixin, Base):
    """One run over a shop's existing catalog: what to make, for which products, at what estimated cost."""

    __tablename__ = "backfills"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    status: Mapped[BackfillStatus] = mapped_column(_enum(BackfillStatus), default=BackfillStatus.COLLECTING)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scenes: Mapped[list[Any]] = mapped_column(default=list)  # preset names; [] means the shop's scene_presets
    dry_run: Mapped[bool] = mapped_column(default=False)
    source_state: Mapped[dict[str, Any]] = mapped_column(default=dict)  # e.g. the Shopify bulk operation's id
    estimate: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_backfills_shop_status", "shop_id", "status"), NEVER_REUSE_IDS)


class BackfillItem(Base):
    """One product of a backfill. Its status is the record that keeps a product from being done twice."""

    __tablename__ = "backfill_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    backfill_id: Mapped[int] = mapped_column(ForeignKey("backfills.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    status: Mapped[BackfillItemStatus] = mapped_column(_enum(BackfillItemStatus), default=BackfillItemStatus.PENDING)
    render_id: Mapped[int | None] = mapped_column(ForeignKey("renders.id", ondelete="SET NULL"))
    # What the product's render depends on (its photos and the settings that shape the output): a product
    # already done with the same fingerprint is skipped by the next backfill.
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("backfill_id", "product_id", name="uq_backfill_items_product"),
                      Index("ix_backfill_items_status", "backfill_id", "status"),
                      Index("ix_backfill_items_fingerprint", "product_id", "fingerprint"), NEVER_REUSE_IDS)


class BatchSceneState(str, enum.Enum):
    PENDING = "pending"  # waits to be submitted (with `submission` set: being submitted, or lost in a crash)
    SUBMITTED = "submitted"  # in the OpenAI batch `batch_id`
    DONE = "done"  # made: its Asset and usage record exist
    FAILED = "failed"  # refused for good (`error` says why)
    DIRECT = "direct"  # the batch did not make it: the render makes it with a direct call

    @property
    def is_settled(self) -> bool:
        return self in (BatchSceneState.DONE, BatchSceneState.FAILED)


class BatchScene(TimestampMixin, Base):
    """One scene of a backfill render made through OpenAI's Batch API: what its JSONL line is built from (images as
    asset-storage keys), what finishing it needs, and where it stands. `custom_id` names it in the batch."""

    __tablename__ = "batch_scenes"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    render_id: Mapped[int] = mapped_column(ForeignKey("renders.id", ondelete="CASCADE"))
    preset: Mapped[str] = mapped_column(String(64))
    custom_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[BatchSceneState] = mapped_column(_enum(BatchSceneState), default=BatchSceneState.PENDING)
    submission: Mapped[str | None] = mapped_column(String(128))  # the key the batch's metadata carries
    batch_id: Mapped[str | None] = mapped_column(String(128))  # OpenAI's batch id once submitted
    model: Mapped[str] = mapped_column(String(64))
    edit: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the edit's fields; its images as storage keys
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the provider's and the pipeline's finishing
    estimate_usd: Mapped[float] = mapped_column(default=0.0)  # at the batch price: reserved from the budget
    error: Mapped[dict[str, Any] | None] = mapped_column()  # {"preset", "reason", "message"} when it failed

    __table_args__ = (UniqueConstraint("custom_id", name="uq_batch_scenes_custom_id"),
                      Index("ix_batch_scenes_state", "state"), Index("ix_batch_scenes_render", "render_id"),
                      NEVER_REUSE_IDS)


class SceneBatch(TimestampMixin, Base):
    """One OpenAI batch we created: what `OpenAIBatchClient.submit` returned (to poll, read and clean it up after a
    restart), and whether its results are read (`ended`) and its files deleted (`cleaned`)."""

    __tablename__ = "scene_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(128))
    submission: Mapped[str] = mapped_column(String(128))
    submitted: Mapped[dict[str, Any]] = mapped_column(default=dict)  # SubmittedBatch.to_dict(); {} when adopted
    status: Mapped[str] = mapped_column(String(32), default="submitted")  # submitted | ended | cleaned
    outcome: Mapped[str] = mapped_column(Text, default="")  # the batch's last state, in words

    __table_args__ = (UniqueConstraint("batch_id", name="uq_scene_batches_batch_id"),
                      Index("ix_scene_batches_status", "status"), NEVER_REUSE_IDS)


class ModelLifecycle(Base):
    """A provider's model as the worker last read it (`GET /v1/models`): when it shuts down, if announced."""

    __tablename__ = "model_lifecycle"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    shutdown_date: Mapped[dt.date | None]
    checked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A browser signed in to a shop's pages. Its cookie names the row; signing out deletes it, so a copy of the
    cookie stops working, and deleting the shop deletes its sessions."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 (hex) of the id the cookie carries
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds; pushed on while the merchant is active

    __table_args__ = (Index("ix_web_sessions_shop", "shop_id"), Index("ix_web_sessions_expires", "expires_at"))


class SpentToken(Base):
    """A one-time token already used (a sign-in link's nonce, a Shopify app launch's signature), kept until the
    token would have expired anyway. In the database, so a Redis flush does not make a used link work again."""

    __tablename__ = "spent_tokens"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # "<purpose>:<nonce>"
    expires_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds

    __table_args__ = (Index("ix_spent_tokens_expires", "expires_at"),)


M = TypeVar("M", Product, Render, Asset, ReferenceImage, SourceImage, Delivery, UsageRecord)


def get_for_shop(session: Session, model: type[M], object_id: int, shop_id: int) -> M | None:
    """A shop-owned row, or None when it does not exist or belongs to another shop."""
    row = session.get(model, object_id)
    if row is None or row.shop_id != shop_id:
        return None
    return row
