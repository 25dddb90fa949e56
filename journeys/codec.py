"""Payload encryption: AES-256-GCM over whole Temporal payloads, keys named by id.

`JOURNEYS_PAYLOAD_KEYS` is a comma-separated list of `<key id>:<base64 of 32 bytes>`.
The first key encrypts; every key listed decrypts. Rotating is putting a new key in
front and keeping the old ones for as long as a history, a schedule or a running
workflow may hold a payload encrypted with them.

An encrypted payload has the metadata `encoding: binary/encrypted` and
`encryption-key-id: <id>`; its data is a random 12-byte nonce followed by the
AES-GCM ciphertext (tag included) of the original payload, serialised whole
(metadata and data), with the key id as associated data. A payload without that
encoding passes through decoding unchanged, so histories written before
encryption was turned on still read.

Nothing here logs, and no error message carries key material or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
FORMAT = "<key id>:<base64 of 32 bytes>"


class PayloadKeyError(ValueError):
    """JOURNEYS_PAYLOAD_KEYS is not a valid key list (the message says what is wrong)."""


class PayloadDecodeError(ValueError):
    """An encrypted payload that cannot be decrypted; `field` is the part at fault
    (`metadata.encryption-key-id` or `data`)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownKeyError(PayloadDecodeError):
    """A payload encrypted with a key id none of the configured keys has."""

    def __init__(self, key_id: str, known: Sequence[str]) -> None:
        super().__init__(
            f"payload encrypted with key {key_id!r}, which JOURNEYS_PAYLOAD_KEYS does not "
            f"have (it has {', '.join(map(repr, known))}): put that key back to read it",
            f"metadata.{KEY_ID}",
        )
        self.key_id = key_id


@dataclass(frozen=True)
class PayloadKey:
    id: str
    secret: bytes = field(repr=False)


def _from_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional; anything else is refused."""
    text = text.strip().translate(str.maketrans("-_", "+/"))
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_keys(text: str) -> tuple[PayloadKey, ...]:
    """The keys of a JOURNEYS_PAYLOAD_KEYS value, the encrypting one first.

    Raises `PayloadKeyError` naming the entry or key id at fault, never the key."""
    if not text.strip():
        raise PayloadKeyError(f"empty: list one or more {FORMAT}, or leave it unset")
    keys: list[PayloadKey] = []
    for number, entry in enumerate(text.split(","), start=1):
        key_id, colon, encoded = (part.strip() for part in entry.partition(":"))
        if not entry.strip():
            raise PayloadKeyError(f"entry {number} is empty (a stray comma?)")
        if not colon:
            raise PayloadKeyError(f"entry {number} is not {FORMAT}")
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise PayloadKeyError(
                f"entry {number}: a key id is 1 to 64 letters, digits, '.', '_' or '-'"
            )
        try:
            secret = _from_base64(encoded)
        except (binascii.Error, ValueError):
            raise PayloadKeyError(f"key {key_id!r}: the key is not base64") from None
        if len(secret) != KEY_BYTES:
            raise PayloadKeyError(
                f"key {key_id!r}: {len(secret)} bytes, an AES-256 key is {KEY_BYTES} "
                "(make one with: openssl rand -base64 32)"
            )
        if any(k.id == key_id for k in keys):
            raise PayloadKeyError(f"key id {key_id!r} appears twice")
        keys.append(PayloadKey(key_id, secret))
    return tuple(keys)


def format_keys(keys: Sequence[PayloadKey]) -> str:
    """The JOURNEYS_PAYLOAD_KEYS value for `keys` (the inverse of `parse_keys`)."""
    return ",".join(f"{k.id}:{base64.b64encode(k.secret).decode()}" for k in keys)


def _printable(raw: bytes) -> str:
    return raw[:64].decode("utf-8", "replace")


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload with the first key; decrypts with whichever key the
    payload names; lets unencrypted payloads through."""

    def __init__(self, keys: Sequence[PayloadKey]) -> None:
        if not keys:
            raise PayloadKeyError("no keys")
        self.key_id = keys[0].id
        self._ciphers = {k.id: AESGCM(k.secret) for k in keys}
        if len(self._ciphers) != len(keys):
            raise PayloadKeyError("a key id appears twice")

    @classmethod
    def from_text(cls, text: str) -> EncryptionCodec:
        """The codec for a JOURNEYS_PAYLOAD_KEYS value."""
        return cls(parse_keys(text))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.key_id.encode()
        sealed = self._ciphers[self.key_id].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """The original of an encrypted payload; any other payload as it is."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID)
        if raw_id is None:
            raise PayloadDecodeError(
                f"an encrypted payload without {KEY_ID} in its metadata", f"metadata.{KEY_ID}"
            )
        key_id = _printable(raw_id)
        cipher = self._ciphers.get(key_id) if raw_id == key_id.encode() else None
        if cipher is None:
            raise UnknownKeyError(key_id, self.key_ids)
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecodeError(
                f"payload encrypted with key {key_id!r} is too short to be one", "data"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise PayloadDecodeError(
                f"payload does not decrypt with key {key_id!r}: it was altered, or "
                "encrypted with another key under the same id",
                "data",
            ) from None
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise PayloadDecodeError(
                f"payload decrypted with key {key_id!r} is not a Temporal payload", "data"
            ) from None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]
