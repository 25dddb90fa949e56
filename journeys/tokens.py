"""HMAC-signed tokens for tracking links: what a recipient can see but not forge.

A token says what kind of link it is (`o` open pixel, `c` click, `u` unsubscribe),
which message it belongs to and, for a click, the target URL; never an address.
It is base64url (no padding) of

    0x02 | kind (one ASCII byte) | message id (16 bytes) | URL (UTF-8, clicks only)
         | the first 16 bytes of HMAC-SHA256(secret, everything before)

A 128-bit tag is the truncation RFC 4868 uses for HMAC-SHA-256. The first format,
`base64url(JSON payload) "." base64url(full HMAC)`, made a click link about 170
characters long, twice this one, in both parts of every mail. Tokens of that format
are still in mails sent before, so they still verify (`verify` tells the two apart
by the dot, which base64url never contains).

A bounce token (`bounce_token`) names a message in the envelope sender of its mail,
`bounces+<token>@<bounce domain>` (VERP), so that a delivery-status notice or a
complaint sent back to that address proves which message it is about. It is the
message id and a tag under the same secret, in a form an SMTP local part can carry:
see `bounce_token`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from typing import Any, Literal

Kind = Literal["o", "c", "u"]

_VERSION = 2
_TAG = 16
_HEAD = 2 + 16  # version, kind, message id
_KINDS = frozenset(b"ocu")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # Strict: a character outside the alphabet is an error, not skipped, so that one
    # token has one spelling.
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _tag(secret: str, signed: bytes) -> bytes:
    return hmac.digest(secret.encode(), signed, hashlib.sha256)[:_TAG]


def link_token(kind: Kind, message_id: str | uuid.UUID, secret: str, url: str = "") -> str:
    """The token of a tracking link; `url` only for a click."""
    if not secret:
        raise ValueError("JOURNEYS_SECRET is not set")
    mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(message_id)
    signed = bytes((_VERSION, ord(kind))) + mid.bytes + url.encode()
    return _b64(signed + _tag(secret, signed))


def verify(token: str, secret: str) -> dict[str, Any] | None:
    """The payload of a genuine token (`k` kind, `m` message id, `u` a click's URL), or
    None for a forged or altered one."""
    # A genuine token is ASCII; anything else (`a.%C3%A9` in a URL) is not one, and
    # compare_digest refuses non-ASCII str with a TypeError.
    if not secret or not token.isascii():
        return None
    if "." in token:
        return _verify_first_format(token, secret)
    try:
        raw = _unb64(token)
    except (ValueError, binascii.Error):
        return None
    if _b64(raw) != token:  # spare low bits in the last character: one spelling only
        return None
    signed, tag = raw[:-_TAG], raw[-_TAG:]
    if len(signed) < _HEAD or not hmac.compare_digest(tag, _tag(secret, signed)):
        return None
    if signed[0] != _VERSION or signed[1] not in _KINDS:
        return None
    payload: dict[str, Any] = {
        "k": chr(signed[1]),
        "m": str(uuid.UUID(bytes=signed[2:_HEAD])),
    }
    if len(signed) > _HEAD:
        try:
            payload["u"] = signed[_HEAD:].decode()
        except UnicodeDecodeError:
            return None
    return payload


def _verify_first_format(token: str, secret: str) -> dict[str, Any] | None:
    body, _, mac = token.partition(".")
    expected = _b64(hmac.digest(secret.encode(), body.encode(), hashlib.sha256))
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


# -- bounce tokens (VERP) ---------------------------------------------------------------
#
# An SMTP local part is at most 64 octets (RFC 5321 4.5.3.1.1), and `bounces+` takes 8 of
# them. Relays may change the case of a local part (some lower-case it on the way, and a
# DSN's recipient is typed by software that may upper-case it), so the token must mean
# the same in any case: it is base32 (RFC 4648: A-Z and 2-7, which no relay reads as a
# delimiter, unlike `-`, `.`, `+` or `=`), written in lower case and read after
# upper-casing. Of
#
#     0x01 (version) | message id (16 bytes) | the first 13 bytes of
#     HMAC-SHA256(secret, "journeys bounce\0" | version | message id)
#
# 30 bytes, so 48 characters without padding and without spare bits (one spelling per
# token, in either case): `bounces+<48>` is 56 octets. A 104-bit tag leaves a forger
# one chance in 2^104 per notice sent, and each try is a notice kept for inspection.
# The tag is computed over a label of its own, so no tracking token's tag is a bounce
# token's.
_BOUNCE_VERSION = 1
_BOUNCE_TAG = 13
_BOUNCE_LABEL = b"journeys bounce\0"
BOUNCE_TOKEN_LENGTH = 48
_BASE32 = re.compile(rf"[A-Z2-7]{{{BOUNCE_TOKEN_LENGTH}}}")


def _bounce_tag(secret: str, signed: bytes) -> bytes:
    return hmac.digest(secret.encode(), _BOUNCE_LABEL + signed, hashlib.sha256)[:_BOUNCE_TAG]


def bounce_token(message_id: str | uuid.UUID, secret: str) -> str:
    """The signed token of a message's bounce address (lower-case base32, 48 chars)."""
    if not secret:
        raise ValueError("JOURNEYS_SECRET is not set")
    mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(message_id)
    signed = bytes((_BOUNCE_VERSION,)) + mid.bytes
    return base64.b32encode(signed + _bounce_tag(secret, signed)).decode().lower()


def verify_bounce_token(token: str, secret: str) -> uuid.UUID | None:
    """The message id of a genuine bounce token, in any case; None for anything else."""
    text = token.upper()
    if not secret or not text.isascii() or not _BASE32.fullmatch(text):
        return None
    raw = base64.b32decode(text)
    signed, tag = raw[:-_BOUNCE_TAG], raw[-_BOUNCE_TAG:]
    if signed[0] != _BOUNCE_VERSION or not hmac.compare_digest(tag, _bounce_tag(secret, signed)):
        return None
    return uuid.UUID(bytes=signed[1:])


BOUNCE_LOCAL_PART = "bounces"


def bounce_address(message_id: str | uuid.UUID, secret: str, domain: str) -> str:
    """A message's envelope sender under JOURNEYS_BOUNCE_DOMAIN (VERP):
    `bounces+<signed token>@<domain>`, 56 octets before the @ (SMTP allows 64)."""
    return f"{BOUNCE_LOCAL_PART}+{bounce_token(message_id, secret)}@{domain}"
