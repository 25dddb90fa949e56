"""Payload encryption: the codec on its own (round trip, rotation, unknown keys, payloads
from before encryption, the key list's errors), then on the real stack: a journey run by
an API and a worker with keys stores only ciphertext in Temporal, replays with the keys,
and the web UI's codec endpoint (/codec) shows its payloads decrypted, to a caller with
the API key, across origins."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from journeys.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadDecodeError,
    PayloadKey,
    PayloadKeyError,
    UnknownKeyError,
    format_keys,
    parse_keys,
)
from journeys.settings import ApiSettings, Settings
from journeys.temporal import connect, data_converter
from tests.builders import linear_journey, mail
from tests.conftest import API_KEY, Stack
from tests.helpers import api_on, create_contact, enrol, publish, read_mail, wait_until_done
from worker import WORKFLOWS, running_worker

OLD = PayloadKey("2025-01", bytes(range(32)))
NEW = PayloadKey("2026-01", bytes(range(100, 132)))
UI_ORIGIN = "http://localhost:8233"


def plain(text: str) -> Payload:
    return Payload(
        metadata={"encoding": b"json/plain", "messageType": b"Greeting"},
        data=json.dumps({"text": text}).encode(),
    )


# -- the codec ---------------------------------------------------------------------------


async def test_round_trip() -> None:
    codec = EncryptionCodec([NEW])
    original = [plain("Dear Ann Example, ann@example.com"), Payload()]
    encoded = await codec.encode(original)
    assert len(encoded) == 2
    for sealed, clear in zip(encoded, original, strict=True):
        assert sealed.metadata["encoding"] == ENCODING
        assert sealed.metadata[KEY_ID] == b"2026-01"
        assert set(sealed.metadata) == {"encoding", KEY_ID}  # the messageType is inside
        assert sealed.data != clear.data
        assert clear.data == b"" or clear.data not in sealed.data
    assert b"ann@example.com" not in encoded[0].SerializeToString()
    assert await codec.decode(encoded) == original
    # A fresh nonce each time: the same payload never encrypts the same way twice.
    again = await codec.encode(original[:1])
    assert again[0].data != encoded[0].data
    assert await codec.decode(again) == original[:1]


async def test_rotation_adds_a_key_in_front() -> None:
    before = await EncryptionCodec([OLD]).encode([plain("written before the rotation")])
    rotated = EncryptionCodec(parse_keys(format_keys([NEW, OLD])))
    assert await rotated.decode(before) == [plain("written before the rotation")]
    after = await rotated.encode([plain("written after")])
    assert after[0].metadata[KEY_ID] == b"2026-01"
    assert await rotated.decode([*before, *after]) == [
        plain("written before the rotation"),
        plain("written after"),
    ]


async def test_a_payload_of_a_key_no_longer_listed_names_that_key() -> None:
    sealed = await EncryptionCodec([OLD]).encode([plain("hello")])
    with pytest.raises(UnknownKeyError) as caught:
        await EncryptionCodec([NEW]).decode(sealed)
    assert caught.value.key_id == "2025-01"
    assert "'2025-01'" in str(caught.value) and "'2026-01'" in str(caught.value)
    assert caught.value.field == f"metadata.{KEY_ID}"


async def test_payloads_from_before_encryption_pass_through() -> None:
    codec = EncryptionCodec([NEW, OLD])
    history = [plain("old"), Payload(metadata={"encoding": b"binary/null"}), Payload()]
    assert await codec.decode(history) == history


async def test_an_altered_payload_does_not_decrypt() -> None:
    codec = EncryptionCodec([NEW])
    sealed = (await codec.encode([plain("hello")]))[0]
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecodeError, match="does not decrypt with key '2026-01'"):
        await codec.decode([flipped])
    # Another key given the id of the one that encrypted it does not read it either.
    impostor = EncryptionCodec([PayloadKey("2026-01", bytes(32))])
    with pytest.raises(PayloadDecodeError, match="does not decrypt"):
        await impostor.decode([sealed])
    without_id = Payload(metadata={"encoding": ENCODING}, data=sealed.data)
    with pytest.raises(PayloadDecodeError, match=KEY_ID):
        await codec.decode([without_id])
    short = Payload(metadata=dict(sealed.metadata), data=b"x")
    with pytest.raises(PayloadDecodeError, match="too short"):
        await codec.decode([short])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("  ", "empty"),
        (f"a:{b64(bytes(32))},", "entry 2 is empty"),
        (b64(bytes(32)), "entry 1 is not <key id>:<base64 of 32 bytes>"),
        (f"a b:{b64(bytes(32))}", "entry 1: a key id is 1 to 64"),
        (f":{b64(bytes(32))}", "entry 1: a key id is 1 to 64"),
        ("a:not base64!", "key 'a': the key is not base64"),
        (f"a:{b64(bytes(16))}", "key 'a': 16 bytes, an AES-256 key is 32"),
        (f"a:{b64(bytes(32))},b:{b64(bytes(33))}", "key 'b': 33 bytes"),
        (f"a:{b64(bytes(32))}, a:{b64(bytes(range(32)))}", "key id 'a' appears twice"),
    ],
)
def test_the_key_list_says_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(PayloadKeyError, match=message) as caught:
        parse_keys(value)
    assert b64(bytes(32)) not in str(caught.value)


def test_the_key_list_accepts_spaces_url_safe_base64_and_no_padding() -> None:
    key = bytes([251] * 32)  # '+' and '/' in standard base64
    urlsafe = base64.urlsafe_b64encode(key).decode().rstrip("=")
    keys = parse_keys(f" new : {urlsafe} , old:{b64(bytes(32))}")
    assert keys == (PayloadKey("new", key), PayloadKey("old", bytes(32)))
    assert parse_keys(format_keys(keys)) == keys
    assert repr(keys[0]) == "PayloadKey(id='new')"  # the key itself is not shown


def test_settings_refuse_a_bad_key_list_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = b64(bytes(range(16)))
    monkeypatch.setenv("JOURNEYS_SECRET", "s")
    monkeypatch.setenv("JOURNEYS_PAYLOAD_KEYS", f"k1:{secret}")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "JOURNEYS_PAYLOAD_KEYS" in str(caught.value)
    assert "key 'k1': 16 bytes, an AES-256 key is 32" in str(caught.value)
    assert secret not in str(caught.value)
    good = format_keys([NEW, OLD])
    monkeypatch.setenv("JOURNEYS_PAYLOAD_KEYS", good)
    settings = Settings()
    assert settings.payload_keys is not None and good not in repr(settings)
    monkeypatch.delenv("JOURNEYS_PAYLOAD_KEYS")
    assert Settings().payload_keys is None


def test_a_process_with_a_bad_key_list_does_not_start() -> None:
    secret = b64(bytes(range(16)))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEYS_", "DATABASE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "journeys.cli", "worker"],
        env={**clean, "JOURNEYS_SECRET": "s", "JOURNEYS_PAYLOAD_KEYS": f"old:{secret}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "JOURNEYS_PAYLOAD_KEYS" in done.stderr
    assert "key 'old': 16 bytes, an AES-256 key is 32" in done.stderr
    assert secret not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("origin", ["*", "http://ui.example.com/path", "ui.example.com"])
def test_codec_origins_are_origins(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        ApiSettings(secret="s", api_key="k", codec_origins=[origin])


def test_codec_origins_default_to_the_dev_ui_and_lose_a_trailing_slash() -> None:
    assert ApiSettings(secret="s", api_key="k").codec_origins == [
        "http://localhost:8233",
        "http://127.0.0.1:8233",
    ]
    settings = ApiSettings(secret="s", api_key="k", codec_origins=["https://UI.example.com/"])
    assert settings.codec_origins == ["https://ui.example.com"]


class Greeting(BaseModel):
    text: str


async def test_the_data_converter_encrypts_only_with_keys() -> None:
    without = Settings(secret="s", payload_keys=None)
    assert data_converter(without) is pydantic_data_converter
    converter = data_converter(
        Settings(secret="s", payload_keys=SecretStr(format_keys([NEW, OLD])))
    )
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.key_id == "2026-01"
    [sealed] = await converter.encode([Greeting(text="Dear Ann")])
    assert sealed.metadata["encoding"] == ENCODING and b"Dear Ann" not in sealed.data
    assert await converter.decode([sealed], [Greeting]) == [Greeting(text="Dear Ann")]
    # What was written before the keys were set still reads.
    [clear] = await pydantic_data_converter.encode([Greeting(text="from before")])
    assert await converter.decode([clear], [Greeting]) == [Greeting(text="from before")]


# -- on the real stack -------------------------------------------------------------------


@dataclass
class Encrypted:
    """A journey run by an API and a worker with keys, on a task queue of their own."""

    settings: ApiSettings
    client: Client  # with the codec
    http: httpx.AsyncClient  # that API
    workflow_id: str
    history: WorkflowHistory  # as the server keeps it, fetched without the codec
    marker: str  # in the mail's subject, hence in the workflow's input
    email: str
    first_name: str


@pytest.fixture(scope="module")
async def encrypted(stack: Stack) -> AsyncIterator[Encrypted]:
    tag = uuid.uuid4().hex[:8]
    settings = stack.settings.model_copy(
        update={
            "payload_keys": SecretStr(format_keys([NEW, OLD])),
            "task_queue": f"codec-{tag}",
        }
    )
    client = await connect(settings)
    marker = f"Confidential offer {tag}"
    email, first_name = f"codec-{tag}@example.com", f"Zebulon{tag}"
    key = f"codec-{tag}"
    # dispatch=False: the session's worker delivers the database's events, as always.
    async with running_worker(settings, client, dispatch=False), api_on(settings) as http:
        await publish(
            http,
            linear_journey(
                key, "Encrypted", ("mail", mail(f"{marker} for {{{{ contact.first_name }}}}"))
            ),
        )
        contact = await create_contact(http, email=email, first_name=first_name)
        enrolled = await enrol(http, key, contact)
        workflow_id = enrolled["enrolments"][0]["workflow_id"]
        await read_mail(stack.http, email, f"{marker} for {first_name}")
        assert (await wait_until_done(http, key, contact))["status"] == "completed"
        history = await stack.temporal.get_workflow_handle(workflow_id).fetch_history()
        yield Encrypted(settings, client, http, workflow_id, history, marker, email, first_name)


def started_input(history: WorkflowHistory) -> Payload:
    first = history.events[0]
    assert first.HasField("workflow_execution_started_event_attributes")
    return first.workflow_execution_started_event_attributes.input.payloads[0]


async def test_temporal_keeps_only_ciphertext(encrypted: Encrypted) -> None:
    payload = started_input(encrypted.history)
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata[KEY_ID] == NEW.id.encode()
    assert encrypted.marker.encode() not in payload.data
    # Nowhere in the history: not the definition, the address, or the name.
    for event in encrypted.history.events:
        raw = event.SerializeToString()
        for secret in (encrypted.marker, encrypted.email, encrypted.first_name):
            assert secret.encode() not in raw, (secret, event.event_type)
    codec = encrypted.client.data_converter.payload_codec
    assert codec is not None
    [clear] = await codec.decode([payload])
    assert encrypted.marker in clear.data.decode()


async def test_the_history_replays_with_the_keys(encrypted: Encrypted) -> None:
    replayer = Replayer(workflows=WORKFLOWS, data_converter=encrypted.client.data_converter)
    await replayer.replay_workflow(encrypted.history)  # raises if a payload did not decode


def wire(payload: Payload) -> dict[str, Any]:
    """A payload as the web UI sends it (protobuf JSON)."""
    return MessageToDict(payload)


async def test_the_codec_endpoint_decrypts_for_the_web_ui(
    encrypted: Encrypted, stack: Stack
) -> None:
    sealed = started_input(encrypted.history)
    headers = {"Origin": UI_ORIGIN, "X-Namespace": "default"}
    answer = await encrypted.http.post(
        "/codec/decode", json={"payloads": [wire(sealed)]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    [clear] = answer.json()["payloads"]
    assert base64.b64decode(clear["metadata"]["encoding"]) == b"json/plain"
    assert encrypted.marker in base64.b64decode(clear["data"]).decode()

    # Unencrypted payloads come back as they were; encode then decode is the identity.
    greeting = wire(plain("Dear Ann"))
    answer = await encrypted.http.post("/codec/encode", json={"payloads": [greeting]})
    assert answer.status_code == 200, answer.text
    [sealed_greeting] = answer.json()["payloads"]
    assert base64.b64decode(sealed_greeting["metadata"]["encoding"]) == ENCODING
    assert b"Dear Ann" not in base64.b64decode(sealed_greeting["data"])
    answer = await encrypted.http.post(
        "/codec/decode", json={"payloads": [sealed_greeting, greeting]}
    )
    assert answer.json()["payloads"] == [greeting, greeting]

    # The session's API has no keys: it answers the payloads unchanged.
    answer = await stack.http.post("/codec/decode", json={"payloads": [wire(sealed)]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["payloads"] == [wire(sealed)]


async def test_the_codec_endpoint_needs_the_api_key_and_answers_the_ui_origin(
    encrypted: Encrypted,
) -> None:
    url = str(encrypted.http.base_url)
    body = {"payloads": [wire(started_input(encrypted.history))]}
    async with httpx.AsyncClient(base_url=url) as browser:
        refused = await browser.post("/codec/decode", json=body, headers={"Origin": UI_ORIGIN})
        assert refused.status_code == 401, refused.text
        assert refused.headers["access-control-allow-origin"] == UI_ORIGIN  # readable by the UI
        assert "Confidential" not in refused.text
        wrong = await browser.post(
            "/codec/decode", json=body, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401

        preflight = {
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-namespace",
        }
        answer = await browser.options("/codec/decode", headers=preflight)
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= {
            h.strip() for h in allowed.split(",")
        }
        assert "POST" in answer.headers["access-control-allow-methods"]

        other = await browser.options(
            "/codec/decode", headers={**preflight, "Origin": "https://evil.example.com"}
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        # CORS is for /codec only: the rest of the API does not answer the UI's origin.
        elsewhere = await browser.get(
            "/journeys",
            headers={"Origin": UI_ORIGIN, "Authorization": f"Bearer {API_KEY}"},
        )
        assert "access-control-allow-origin" not in elsewhere.headers


async def test_the_codec_endpoint_names_what_is_wrong(encrypted: Encrypted) -> None:
    http = encrypted.http
    sealed = wire(started_input(encrypted.history))

    async def refused(content: bytes | dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(content, dict):
            answer = await http.post("/codec/decode", json=content)
        else:
            answer = await http.post(
                "/codec/decode", content=content, headers={"Content-Type": "application/json"}
            )
        assert answer.status_code == 422, answer.text
        detail: list[dict[str, Any]] = answer.json()["detail"]
        return detail

    assert (await refused(b"{not json"))[0]["type"] == "json_invalid"
    assert (await refused({"payload": []}))[0]["loc"] == ["body", "payloads"]
    [bad] = await refused({"payloads": [{"metadata": {}, "data": "not base64!"}]})
    assert bad["loc"] == ["body", "payloads", 0, "data"] and "not base64" in bad["msg"]
    [bad] = await refused({"payloads": [{"metadata": {"encoding": 7}}]})
    assert bad["loc"] == ["body", "payloads", 0, "metadata", "encoding"]

    unknown = {**sealed, "metadata": {**sealed["metadata"], KEY_ID: b64(b"1999-01")}}
    [bad] = await refused({"payloads": [wire(plain("fine")), unknown]})
    assert bad["loc"] == ["body", "payloads", 1, "metadata", KEY_ID]
    assert "'1999-01'" in bad["msg"]

    data = bytearray(base64.b64decode(sealed["data"]))
    data[-1] ^= 1
    [bad] = await refused({"payloads": [{**sealed, "data": b64(bytes(data))}]})
    assert bad["loc"] == ["body", "payloads", 0, "data"]
    assert "does not decrypt with key '2026-01'" in bad["msg"]
