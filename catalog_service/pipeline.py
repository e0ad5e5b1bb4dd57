"""The render core: source photo bytes in, encoded assets out. No database, no queue, no Flask.

jobs/render.py loads the rows, calls make_assets() with a callback that keeps each scene the moment it is
made (a paid call must be recorded when it is made, whatever fails after it), and saves what comes back.
"""

from __future__ import annotations

import contextvars
import dataclasses
import io
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from .imaging.cutout import WHITE_JPEG_QUALITY, CutoutOptions, encode_cutout, remove_background, white_variant
from .imaging.encode import CONTENT_TYPES, EXTENSIONS, encode
from .imaging.fidelity import measure
from .imaging.overlay import draw_badge
from .imaging.provenance import sign
from .scenes.base import ProductInfo, ProviderError, ScenePreset, SceneProvider, SceneRequest, SceneResult
from .scenes.pricing import Calibration

if TYPE_CHECKING:
    from .scenes.openai_batch import BatchEdit, OpenAIBatchClient


@dataclasses.dataclass(frozen=True)
class MadeAsset:
    kind: str  # cutout | white | scene
    preset: str
    data: bytes
    content_type: str
    ext: str
    width: int
    height: int
    cost_usd: float = 0.0
    model: str = ""
    provider: str = ""
    quality: str = ""
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    estimate_usd: float | None = None
    size: str = ""
    source_type: str = ""
    fidelity: dict[str, Any] | None = None  # {"delta_e", "ssim", "passed"} for a generated scene
    hold_reason: str | None = None  # set when the scene must wait for review whatever the publish mode


@dataclasses.dataclass(frozen=True)
class DeferredScene:
    """A scene left for a batch (make_assets with `defer_scenes`): its request, and its estimate at the batch price,
    already reserved from the budget."""

    request: SceneRequest
    estimate_usd: float


@dataclasses.dataclass
class PipelineResult:
    assets: list[MadeAsset]
    errors: list[dict[str, str]]  # one per scene that could not be made
    timings_ms: dict[str, int]
    deferred: list[DeferredScene] = dataclasses.field(default_factory=list)


@runtime_checkable
class BatchingProvider(Protocol):
    """A provider whose scenes can wait for a batch at a lower price (the OpenAI provider): the edit is prepared
    now, sent later, and its answer finished by `finish` as a direct answer is."""

    def estimate_cost(self, request: SceneRequest, *, batch: bool = False) -> float: ...

    def prepare_batch(self, request: SceneRequest, custom_id: str) -> tuple[BatchEdit, dict[str, Any]]: ...

    def finish(self, context: Mapping[str, Any], image: bytes, usage_raw: dict[str, Any], *, cutout_png: bytes,
               batch: bool) -> SceneResult: ...

    def generate(self, request: SceneRequest) -> SceneResult: ...

    def batch_client(self) -> OpenAIBatchClient: ...


@dataclasses.dataclass(frozen=True)
class RenderPlan:
    """What one render makes, taken from the shop's settings and the render's options."""

    cutout: CutoutOptions = CutoutOptions()
    cutout_format: str = "png"
    keep_cutout: bool = True  # False: the cutout only feeds the scenes; no cutout or white asset is kept
    white: bool = True
    presets: Sequence[ScenePreset] = ()
    references: Sequence[bytes] = ()  # the shop's reference photos, for presets that name none
    preset_references: Mapping[str, Sequence[bytes]] = dataclasses.field(default_factory=dict)
    product: ProductInfo = ProductInfo()
    shop_key: str = ""
    model: str = ""
    max_pixels: int = 50_000_000
    budget_usd: float | None = None  # what paid scene calls may still spend this month; None: no limit
    calibration: Calibration | None = None  # recorded usage for the estimates (spend.load_calibration)
    concurrency: int = 4
    signer: Any = None  # a C2PA signer (imaging.provenance) for images a generative model touched; None: XMP only


def cutout_options(cutout_settings: Mapping[str, Any], max_side_cap: int) -> CutoutOptions:
    """CutoutOptions from a shop's validated `cutout` settings, its size capped by the service's own limit."""
    return CutoutOptions(
        max_side=min(cutout_settings["max_side"], max_side_cap),
        padding=cutout_settings["padding"], square=cutout_settings["square"],
        # Settings saved before these existed lack them: the defaults apply.
        refine=cutout_settings.get("refine", True), keep_shadow=cutout_settings.get("keep_shadow", False),
    )


SceneMade = Callable[[MadeAsset], None]
"""Called with each scene as soon as it is made, on the calling thread."""


def make_assets(
    source: bytes, plan: RenderPlan, *, session: Any, provider: SceneProvider, final_attempt: bool = True,
    on_scene: SceneMade | None = None, defer_scenes: bool = False,
) -> PipelineResult:
    """Cutout, white variant and scenes for one source photo.

    With `defer_scenes` (a provider that batches), the scenes are not made: each is checked against the budget at
    its batch price and handed back in `deferred`, for the caller to send in a batch.

    A bad photo raises ImageRejected (nothing can be made). The scenes are made concurrently; each one
    made is handed to `on_scene` at once (before any other scene's failure can end the call), so the
    caller keeps it and records its cost. One that fails permanently, or would pass the budget, is
    recorded in `errors` while the others still ship; a transient provider failure is raised once every
    scene has finished, so the job can be retried for the missing ones, unless this is the final attempt:
    then it is recorded too, and the cutout and the other scenes ship without it.
    """
    timings: dict[str, int] = {}
    started = time.perf_counter()
    cutout = remove_background(source, session, plan.cutout, max_pixels=plan.max_pixels)
    cutout_png = encode_cutout(cutout, "png")
    timings["cutout"] = _ms_since(started)

    assets: list[MadeAsset] = []
    if plan.keep_cutout:
        cutout_bytes = cutout_png if plan.cutout_format == "png" else encode_cutout(cutout, plan.cutout_format)
        assets.append(_asset("cutout", "", cutout_bytes, plan.cutout_format, cutout.image.size))
    if plan.keep_cutout and plan.white:
        started = time.perf_counter()
        white = white_variant(cutout.product, plan.cutout)
        assets.append(_asset("white", "", encode(white, "jpeg", quality=WHITE_JPEG_QUALITY), "jpeg", white.size))
        timings["white"] = _ms_since(started)

    errors: list[dict[str, str]] = []
    budget = _Budget(plan.budget_usd)
    batching = provider if defer_scenes and isinstance(provider, BatchingProvider) else None
    calls = []
    for preset in plan.presets:
        references = tuple(plan.preset_references.get(preset.name) or plan.references)
        if preset.style == "reference" and not references:
            continue  # a reference scene needs the merchant's reference photos; without them it is not asked for
        request = SceneRequest(
            cutout_png=cutout_png, preset=preset, product=plan.product, references=references,
            shop_key=plan.shop_key, model=plan.model, text=preset.text, text_mode=preset.text_mode,
            calibration=plan.calibration,
        )
        try:
            estimate = batching.estimate_cost(request, batch=True) if batching else provider.estimate_cost(request)
        except ProviderError as exc:
            if batching is None:
                raise
            errors.append({"preset": preset.name, "reason": exc.reason, "message": str(exc)})
            continue
        if not budget.reserve(estimate):
            errors.append({"preset": preset.name, "reason": "budget",
                           "message": f"Skipped: about ${estimate:.2f} would pass this month's budget "
                                      f"(${budget.left:.2f} left). Raise the budget in settings to make it."})
            continue
        calls.append(_Call(request, estimate))
    if batching is not None:
        return PipelineResult(assets=assets, errors=errors, timings_ms=timings,
                              deferred=[DeferredScene(call.request, call.estimate_usd) for call in calls])

    finish = _Finish(cutout=cutout.image, signer=plan.signer)
    outcomes = _run_scenes(provider, calls, plan.concurrency, on_scene, finish)
    transient = next((out for out in outcomes if isinstance(out, ProviderError) and out.retryable), None)
    if transient is not None and not final_attempt:
        raise transient
    for call, outcome in zip(calls, outcomes, strict=True):
        name = call.request.preset.name
        if isinstance(outcome, ProviderError):
            errors.append({"preset": name, "reason": outcome.reason, "message": str(outcome)})
            continue
        scene, elapsed_ms = outcome
        assets.append(scene)
        timings[f"scene:{name}"] = elapsed_ms
    return PipelineResult(assets=assets, errors=errors, timings_ms=timings)


_Outcome = tuple[MadeAsset, int] | ProviderError


@dataclasses.dataclass(frozen=True)
class _Call:
    request: SceneRequest
    estimate_usd: float


@dataclasses.dataclass(frozen=True)
class _Finish:
    """What every made scene goes through after the provider: the exact text, the fidelity check, the marking."""

    cutout: Image.Image  # the cutout the provider was given (decoded), to measure the product in the scene against
    signer: Any = None


def _run_scenes(
    provider: SceneProvider, calls: list[_Call], concurrency: int, on_scene: SceneMade | None, finish: _Finish
) -> list[_Outcome]:
    """Every call's outcome, in the order of `calls`; each made scene goes to `on_scene` as it finishes."""
    outcomes: dict[int, _Outcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(calls) or 1))) as pool:
        # Each scene runs in a copy of this thread's context, so its log lines keep the render and shop ids.
        futures: dict[Future[_Outcome], int] = {
            pool.submit(contextvars.copy_context().run, _scene, provider, call, finish): index
            for index, call in enumerate(calls)
        }
        try:
            for future in as_completed(futures):
                outcome = outcomes[futures[future]] = future.result()
                if on_scene is not None and not isinstance(outcome, ProviderError):
                    on_scene(outcome[0])
        except BaseException:
            # The caller could not keep a scene (or the job timed out): start no more paid calls.
            for future in futures:
                future.cancel()
            raise
    return [outcomes[index] for index in range(len(calls))]


def _scene(provider: SceneProvider, call: _Call, finish: _Finish) -> tuple[MadeAsset, int] | ProviderError:
    """One scene, made and finished (finish_scene). Errors come back as values for the caller."""
    request = call.request
    started = time.perf_counter()
    try:
        scene = provider.generate(request)
    except ProviderError as exc:
        return exc
    made = finish_scene(scene, preset=request.preset.name, quality=request.preset.quality, text=request.text,
                        text_mode=request.text_mode, cutout=finish.cutout, signer=finish.signer,
                        estimate_usd=call.estimate_usd)
    return made, _ms_since(started)


def finish_scene(scene: SceneResult, *, preset: str, quality: str, text: str, text_mode: str, cutout: Image.Image,
                 signer: Any = None, estimate_usd: float | None = None) -> MadeAsset:
    """A scene the provider made (directly or in a batch), finished: its exact text drawn on when we draw it, the
    product checked against the `cutout`, and the file marked (and signed, when a signer is set) when a generative
    model touched it."""
    data, content_type, width, height = scene.data, scene.content_type, scene.width, scene.height
    fidelity: dict[str, Any] | None = None
    hold_reason: str | None = None
    if scene.placement is not None or (text and text_mode == "overlay"):
        with scene.image or Image.open(io.BytesIO(scene.data)) as decoded:
            decoded.load()
            if scene.placement is not None:
                # Measured before the badge is drawn: the badge sits beside the product, never on it.
                measured = measure(decoded, cutout, scene.placement)
                hold_reason, fidelity = measured.reason(), measured.as_dict()
            if text and text_mode == "overlay":
                data = encode(draw_badge(decoded, text), "jpeg", quality=90, source_type=scene.source_type)
                content_type = CONTENT_TYPES["jpeg"]
    if scene.source_type and signer is not None:
        data = sign(data, content_type, scene.source_type, signer)
    return MadeAsset(
        kind="scene", preset=preset, data=data, content_type=content_type, ext=_ext_for(content_type),
        width=width, height=height, cost_usd=scene.cost_usd, model=scene.model, provider=scene.provider,
        usage=dict(scene.usage), quality=quality, estimate_usd=scene.estimate_usd or estimate_usd,
        size=scene.size, source_type=scene.source_type, fidelity=fidelity, hold_reason=hold_reason,
    )


class _Budget:
    """What paid calls may still spend; estimates are reserved before a call is made."""

    def __init__(self, left: float | None) -> None:
        self.left = float("inf") if left is None else left

    def reserve(self, estimate: float) -> bool:
        if estimate <= 0:
            return True
        if estimate > self.left:
            return False
        self.left -= estimate
        return True


def _asset(kind: str, preset: str, data: bytes, fmt: str, size: tuple[int, int]) -> MadeAsset:
    return MadeAsset(kind=kind, preset=preset, data=data, content_type=CONTENT_TYPES[fmt], ext=EXTENSIONS[fmt],
                     width=size[0], height=size[1])


def _ext_for(content_type: str) -> str:
    for fmt, known in CONTENT_TYPES.items():
        if known == content_type:
            return EXTENSIONS[fmt]
    raise ValueError(f"a scene provider returned {content_type!r}, which we do not store")


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
