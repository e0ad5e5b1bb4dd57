"""Per-shop request limits: a fixed-window counter in Redis, one atomic INCR + EXPIRE per request."""

from __future__ import annotations

import dataclasses
import logging
import math
import time

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether one more request fits; when not, how many seconds until the window turns."""

    allowed: bool
    count: int
    limit: int
    retry_after_s: int = 0


def hit(redis: Redis, name: str, *, limit: int, window_s: int = 60, now: float | None = None) -> Verdict:
    """Count one request against `name` in the current window; refused once the window holds `limit` requests.

    The counter and its expiry are set in one MULTI/EXEC, so concurrent requests (any number of web
    processes) count exactly. Refused requests count too: hammering does not shorten the wait. When Redis
    does not answer, the request is let through and logged: work cannot run without Redis anyway, and the
    database row, not the counter, is the record of what was asked.
    """
    now = time.time() if now is None else now
    window = int(now // window_s)
    key = f"ratelimit:{name}:{window}"
    try:
        pipe = redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, window_s + 5)
        count = int(pipe.execute()[0])
    except RedisError as exc:
        log.warning("ratelimit=%s not checked, Redis unavailable: %s", name, exc.__class__.__name__)
        return Verdict(allowed=True, count=0, limit=limit)
    if count <= limit:
        return Verdict(allowed=True, count=count, limit=limit)
    retry_after = max(1, math.ceil((window + 1) * window_s - now))
    return Verdict(allowed=False, count=count, limit=limit, retry_after_s=retry_after)


class LimitReached(Exception):
    """Refused by a rate limit; `verdict.retry_after_s` says when to try again."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"limit of {verdict.limit} reached; retry in {verdict.retry_after_s} s")
        self.verdict = verdict


def enforce(redis: Redis, name: str, *, limit: int, window_s: int = 60, now: float | None = None) -> Verdict:
    """hit(), raising LimitReached when the request does not fit."""
    verdict = hit(redis, name, limit=limit, window_s=window_s, now=now)
    if not verdict.allowed:
        raise LimitReached(verdict)
    return verdict
