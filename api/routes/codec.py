"""The remote codec the Temporal web UI calls to show encrypted payloads decrypted.

`POST /codec/decode` and `POST /codec/encode` take and answer Temporal's codec-server
protocol: `{"payloads": [{"metadata": {name: base64}, "data": base64}]}` (payloads as
protobuf JSON). Point the UI's codec endpoint at `<api>/codec`. The UI sends
`X-Namespace`; one deployment has one namespace and one key list, so it is not needed.

Both need a key with the `admin` scope: decrypted payloads hold personal data. Browsers
call them across origins: CORS (credentials, `Authorization`, preflight) is allowed on
`/codec` only, for the origins in JOURNEYS_CODEC_ORIGINS. Without JOURNEYS_PAYLOAD_KEYS
both answer the payloads unchanged, as a client without a codec would see them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header
from pydantic import AfterValidator, BaseModel, Field, PlainSerializer, PlainValidator
from pydantic.json_schema import WithJsonSchema
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from api.deps import TemporalDep, require_admin
from api.errors import AUTH_RESPONSES, unprocessable
from api.outages import OUTAGE_RESPONSE
from journeys.codec import PayloadDecodeError
from journeys.schema import PAYLOAD
from journeys.settings import ApiSettings

PREFIX = "/codec"


def _from_base64(value: object) -> bytes:
    """Base64 as protobuf JSON writes bytes: standard or URL-safe, padding optional.
    (Bytes are taken as they are: JSON has none, only this module makes them.)"""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    text = value.translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def _utf8(name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a metadata name must be valid UTF-8 (no lone surrogates)") from None
    return name


Base64 = Annotated[
    bytes,
    PlainValidator(_from_base64),
    PlainSerializer(lambda raw: base64.b64encode(raw).decode(), return_type=str),
    WithJsonSchema({"type": "string", "format": "byte", "description": "base64"}),
]
MetadataName = Annotated[str, AfterValidator(_utf8)]


class WirePayload(BaseModel):
    metadata: dict[MetadataName, Base64] = Field(
        default_factory=dict, description="e.g. encoding: base64 of json/plain"
    )
    data: Base64 = Field(default=b"", description="the payload's bytes, base64")

    def to_proto(self) -> Payload:
        return Payload(metadata=self.metadata, data=self.data)

    @classmethod
    def of(cls, payload: Payload) -> WirePayload:
        return cls(metadata=dict(payload.metadata), data=payload.data)


class WirePayloads(BaseModel):
    payloads: list[WirePayload]


router = APIRouter(
    prefix=PREFIX,
    tags=["codec"],
    dependencies=[Depends(require_admin)],
    responses={**AUTH_RESPONSES, **OUTAGE_RESPONSE},
)

Namespace = Annotated[str | None, Header(description="sent by the web UI; not needed")]


async def _convert(codec: PayloadCodec | None, body: WirePayloads, *, decode: bool) -> WirePayloads:
    if codec is None:
        return body
    out: list[WirePayload] = []
    for i, wire in enumerate(body.payloads):
        try:
            payload = wire.to_proto()
            converted = await (codec.decode if decode else codec.encode)([payload])
        except PayloadDecodeError as exc:
            raise unprocessable(
                [(("payloads", i, *exc.field.split(".", 1)), str(exc))], kind=PAYLOAD
            ) from None
        out.extend(WirePayload.of(p) for p in converted)
    return WirePayloads(payloads=out)


@router.post("/decode", response_model=WirePayloads)
async def decode(
    body: WirePayloads, temporal: TemporalDep, x_namespace: Namespace = None
) -> WirePayloads:
    """The payloads decrypted; payloads that are not encrypted come back unchanged. A
    payload whose key is not configured, or that does not decrypt, is a 422 naming it."""
    return await _convert(temporal.data_converter.payload_codec, body, decode=True)


@router.post("/encode", response_model=WirePayloads)
async def encode(
    body: WirePayloads, temporal: TemporalDep, x_namespace: Namespace = None
) -> WirePayloads:
    """The payloads encrypted with the current key, as a worker would write them."""
    return await _convert(temporal.data_converter.payload_codec, body, decode=False)


class _CodecCors:
    """CORS for the web UI, on /codec only: no other endpoint answers another origin."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_credentials=True,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI, settings: ApiSettings) -> None:
    app.add_middleware(_CodecCors, origins=settings.codec_origins)
