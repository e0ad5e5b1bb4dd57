"""Reading OpenAI's model shutdown dates through the openai library, against the fake OpenAI server's
`GET /v1/models` on loopback."""

from __future__ import annotations

import datetime as dt

import openai
import pytest

from catalog_service.scenes.openai_lifecycle import (
    LifecycleRefused,
    LifecycleUnavailable,
    make_client,
    parse_shutdown_date,
    read_shutdown_dates,
)
from fakes.openai_server import FakeOpenAI, Scripted

KEY = "sk-test-lifecycle-key"


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake):  # type: ignore[no-untyped-def]
    with openai.OpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0) as made:
        yield made


def entry(model: str, **extra: object) -> dict[str, object]:
    return {"id": model, "object": "model", "created": 1_776_729_600, "owned_by": "system", **extra}


def test_every_listed_model_with_its_shutdown_date(fake, client) -> None:
    """A date where one is announced; None where it is null or absent."""
    fake.models = [entry("gpt-image-2"), entry("gpt-image-2.5-flare", shutdown_date="2027-03-01"),
                   entry("gpt-image-1.5", shutdown_date="2026-12-01"), entry("gpt-4o", shutdown_date=None)]
    dates = read_shutdown_dates(client)
    assert dates == {"gpt-image-2": None, "gpt-image-2.5-flare": dt.date(2027, 3, 1),
                     "gpt-image-1.5": dt.date(2026, 12, 1), "gpt-4o": None}
    sent = fake.requests[-1]
    assert (sent.method, sent.path, sent.has_authorization) == ("GET", "/v1/models", True)


def test_a_malformed_date_is_read_as_none_announced_and_the_rest_still_count(fake, client) -> None:
    """One bad entry does not hide the others."""
    fake.models = [entry("gpt-image-2", shutdown_date="next spring"), entry("gpt-image-2.6-flare",
                                                                              shutdown_date="2027-01-15")]
    assert read_shutdown_dates(client) == {"gpt-image-2": None, "gpt-image-2.6-flare": dt.date(2027, 1, 15)}


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("2026-12-01", dt.date(2026, 12, 1)), (20261201, None), ("2026-13-01", None)])
def test_parse_shutdown_date(value, expected) -> None:
    """YYYY-MM-DD is a date; anything else is none announced."""
    assert parse_shutdown_date("m", value) == expected


def test_a_server_failure_is_unavailable(fake, client) -> None:
    """5xx and 429: try again at the next start."""
    fake.fail(500)
    with pytest.raises(LifecycleUnavailable, match="HTTP 500"):
        read_shutdown_dates(client)
    fake.fail(429)
    with pytest.raises(LifecycleUnavailable, match="HTTP 429"):
        read_shutdown_dates(client)


def test_a_refused_key_is_refused_without_echoing_it(fake, client) -> None:
    """A 401 says to check the key and never quotes it, not even in a chained exception."""
    fake.unauthorized()
    with pytest.raises(LifecycleRefused, match="HTTP 401") as caught:
        read_shutdown_dates(client)
    assert KEY not in str(caught.value) and caught.value.__cause__ is None


def test_a_slow_answer_is_bounded_by_the_timeout(fake, client) -> None:
    """A worker starting never waits longer than the timeout for the list."""
    fake.slow(3)
    with pytest.raises(LifecycleUnavailable, match="within 1 s"):
        read_shutdown_dates(client, timeout_s=1.0)


def test_an_answer_that_is_not_a_list_is_refused(fake, client) -> None:
    """A 200 that is not OpenAI's list shape is an error, not an empty list."""
    fake.respond(Scripted(body={"error": "not a list"}))
    with pytest.raises(LifecycleRefused, match="could not be read"):
        read_shutdown_dates(client)


def test_no_key_no_client(monkeypatch) -> None:
    """Without OPENAI_API_KEY there is nothing to ask: a typed refusal, not the library's error."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LifecycleRefused, match="OPENAI_API_KEY"):
        make_client()
