"""The openai library's errors, after its own retries, as ours: once, in words a merchant can act on, never
with the API key (the library's own text can quote it, "Incorrect API key provided: ...").

The direct image client and the Batch API client both map through here; each says what it asked of OpenAI.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import openai

from .base import ProviderError, ProviderUnavailable, SceneRefused

MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
"""Error codes with which OpenAI says its safety system refused the request."""
_MODERATION_WORDS = re.compile(r"safety system|content policy|moderation", re.IGNORECASE)
_KEY_LIKE = re.compile(r"\b(sk|sess|rk)-[A-Za-z0-9_\-*.]{3,}")


def is_moderation(code: object, said: str) -> bool:
    """Whether an error (its code, its cleaned message) is OpenAI's safety system refusing the request."""
    return code in MODERATION_CODES or bool(_MODERATION_WORDS.search(said))


def clean(message: object, secret: str = "") -> str:
    """OpenAI's message with the key and anything key-like removed, ending in a full stop."""
    text = message.strip() if isinstance(message, str) and message.strip() else "no details given."
    if secret:
        text = text.replace(secret, "[redacted]")
    text = _KEY_LIKE.sub("[redacted]", text)
    return text if text.endswith((".", "!", "?")) else text + "."


class OpenAIErrors:
    """A context manager: an openai error raised inside it leaves as a ProviderError, without a chained traceback.

    `doing` says what we asked of OpenAI ("make this scene", "read the batch"); `not_found` gives the words for a
    404 whose code names a model (a model shut down since the settings were saved), when the caller has them.
    """

    def __init__(self, secret: str, *, doing: str, model_not_found: Callable[[str], str] | None = None) -> None:
        self._secret, self._doing, self._model_not_found = secret, doing, model_not_found

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, openai.OpenAIError):
            return None
        raise self.map(exc) from None  # a chained traceback would carry the library's text into the job's logs

    def map(self, exc: openai.OpenAIError) -> ProviderError:
        doing = self._doing
        body = getattr(exc, "body", None)
        said = clean(body.get("message") if isinstance(body, dict) else None, self._secret)
        code = getattr(exc, "code", None)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderUnavailable(f"OpenAI did not answer in time, even after retries, when asked to {doing}; "
                                       "it will be tried again later.", reason="timeout")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailable(f"Could not connect to OpenAI to {doing}, even after retries; it will be "
                                       "tried again later.", reason="connection")
        if isinstance(exc, openai.RateLimitError):
            if code == "insufficient_quota":
                return SceneRefused(f"The OpenAI account has run out of credit: {said} Add credit or raise the limit "
                                    "in the OpenAI dashboard, then regenerate.", reason="quota")
            return ProviderUnavailable(f"OpenAI is rate-limiting this account and still was after retries (asked to "
                                       f"{doing}): {said} It will be tried again later.", reason="rate_limited")
        if isinstance(exc, openai.AuthenticationError):
            return SceneRefused("The OpenAI API key was refused (HTTP 401): check OPENAI_API_KEY on the server.",
                                reason="auth")
        if isinstance(exc, openai.PermissionDeniedError):
            return SceneRefused(f"The OpenAI API key may not {doing} (HTTP 403): {said}", reason="auth")
        if isinstance(exc, openai.BadRequestError) and is_moderation(code, said):
            return SceneRefused(f"OpenAI refused to {doing} under its content policy: {said}", reason="content_policy")
        if isinstance(exc, openai.NotFoundError):
            if code == "model_not_found" and self._model_not_found is not None:
                return SceneRefused(self._model_not_found(said), reason="invalid_request")
            return SceneRefused(f"OpenAI has nothing to {doing} with (HTTP 404): {said} It was deleted, has "
                                "expired, or belongs to another API key.", reason="not_found")
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                return ProviderUnavailable(f"OpenAI failed with HTTP {exc.status_code} when asked to {doing}, even "
                                           f"after retries: {said} It will be tried again later.", reason="upstream")
            return SceneRefused(f"OpenAI refused to {doing} (HTTP {exc.status_code}): {said}",
                                reason="invalid_request")
        return ProviderUnavailable(f"OpenAI's answer could not be read when asked to {doing} "
                                   f"({type(exc).__name__}); it will be tried again later.", reason="bad_response")
