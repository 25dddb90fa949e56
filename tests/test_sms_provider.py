"""The SMS provider client against local HTTP servers: what each answer means."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from activities.retries import redacted
from activities.twilio import (
    SmsConfigError,
    SmsOutcomeUnknown,
    SmsProviderUnavailable,
    SmsRejected,
    TwilioProvider,
    parse_sms_url,
)
from journeys.devstack import free_port


@asynccontextmanager
async def provider_answering(status: int | None, body: dict[str, object]) -> AsyncIterator[str]:
    """A provider that answers every request with `status` and `body`; with None it
    reads the request and closes the connection without answering."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        requests.append(head + await reader.readexactly(length))
        if status is not None:
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"twilio+http://ACtest:secret@127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def send(url: str) -> str:
    provider = TwilioProvider(parse_sms_url(url))
    try:
        return await provider.send("+31612345678", "Shop", "Hi")
    finally:
        await provider.close()


async def test_an_accepted_message_gives_its_sid() -> None:
    async with provider_answering(201, {"sid": "SM123", "status": "queued"}) as url:
        assert await send(url) == "SM123"


@pytest.mark.parametrize(
    ("status", "body", "error", "says"),
    [
        (400, {"code": 21211, "message": "The 'To' number is not valid"}, SmsRejected, "21211"),
        (401, {"code": 20003, "message": "Authenticate"}, SmsConfigError, "credentials"),
        (429, {"code": 20429, "message": "Too many requests"}, SmsProviderUnavailable, "429"),
        (503, {}, SmsProviderUnavailable, "503"),
    ],
)
async def test_refusals_and_outages(
    status: int, body: dict[str, object], error: type[Exception], says: str
) -> None:
    async with provider_answering(status, body) as url:
        with pytest.raises(error, match=says):
            await send(url)


async def test_no_answer_after_the_request_means_the_outcome_is_unknown() -> None:
    async with provider_answering(None, {}) as url:
        with pytest.raises(SmsOutcomeUnknown):
            await send(url)


async def test_a_provider_that_is_not_there_is_unavailable() -> None:
    with pytest.raises(SmsProviderUnavailable):
        await send(f"twilio+http://ACtest:secret@127.0.0.1:{free_port()}")


def test_the_sms_url_names_provider_and_credentials() -> None:
    config = parse_sms_url("twilio://AC1:tok%2Fen@api.twilio.com")
    assert (config.base_url, config.account_sid, config.auth_token) == (
        "https://api.twilio.com",
        "AC1",
        "tok/en",
    )
    assert parse_sms_url("twilio+http://A:B@127.0.0.1:8000/dev/sms").base_url == (
        "http://127.0.0.1:8000/dev/sms"
    )
    for bad in ("http://A:B@host", "twilio://host", "twilio://A@host"):
        with pytest.raises(ValueError, match="SMS_URL"):
            parse_sms_url(bad)


async def test_a_refusal_that_quotes_the_number_is_reported_without_it() -> None:
    """The provider's message goes into the send's reason, the workflow's history and
    the logs: the phone number it quotes does not."""
    body = {
        "code": 21211,
        "message": "The 'To' number +31 6 1234 5678 is not a valid phone number.",
    }
    async with provider_answering(400, body) as url:
        with pytest.raises(SmsRejected) as info:
            await send(url)
    reason = str(info.value)
    assert "21211" in reason and "not a valid phone number" in reason
    assert "1234" not in reason and "<phone>" in reason


def test_redacted_hides_addresses_and_phone_numbers_but_not_codes() -> None:
    text = "450 <ann@example.com>: greylisted; call +31 (0)6-1234 5678 or 0612345678; code 21211"
    assert (
        redacted(text, phones=True)
        == "450 <<address>>: greylisted; call <phone> or <phone>; code 21211"
    )
    # Elsewhere digits stay: an outage names a host and a port.
    assert redacted("connect to 192.168.100.200:5432 failed") == (
        "connect to 192.168.100.200:5432 failed"
    )
