"""HMAC-signed tokens for tracking links: what a recipient can see but not forge.

A token is `base64url(json payload) "." base64url(HMAC-SHA256(secret, payload))`.
Payloads hold the message id and, for clicks, the target URL; never an address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def sign(payload: dict[str, Any], secret: str) -> str:
    if not secret:
        raise ValueError("JOURNEYS_SECRET is not set")
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_mac(secret, body)}"


def verify(token: str, secret: str) -> dict[str, Any] | None:
    """The payload of a genuine token, or None for a forged or altered one."""
    # A genuine token is ASCII; anything else (`a.%C3%A9` in a URL) is not one, and
    # compare_digest refuses non-ASCII str with a TypeError.
    if not token.isascii():
        return None
    body, sep, mac = token.partition(".")
    if not sep or not secret or not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
