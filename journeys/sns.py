"""Amazon SES bounce and complaint notifications, as Amazon SNS delivers them.

An SNS message is trusted only when its signature verifies against the
certificate at `SigningCertURL`, and that URL is Amazon's SNS host over https
(else anybody could sign with a certificate of their own). The topic must be one
the operator named (JOURNEYS_SNS_TOPICS), and the message at most an hour old.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from journeys.definition.common import DeliveryErrorKind

# sns.<region>.amazonaws.com, and the China regions' .amazonaws.com.cn
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
MAX_AGE = timedelta(hours=1)

# The fields signed, in this order, per message type (absent optional ones are left out).
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}

CertificateFetcher = Callable[[str], Awaitable[bytes]]


class NotTrusted(ValueError):
    """The message is not a genuine SNS message for an accepted topic."""


def is_sns_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and SNS_HOST.match(parts.hostname or "") is not None


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = _SIGNED.get(str(message.get("Type")))
    if fields is None:
        raise NotTrusted(f"unknown SNS message type {message.get('Type')!r}")
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode()


async def verify(
    message: dict[str, Any],
    topics: list[str],
    fetch_certificate: CertificateFetcher,
    now: datetime | None = None,
) -> None:
    """Raise `NotTrusted` (saying why) unless `message` is a genuine, fresh SNS message
    of one of `topics`."""
    if message.get("TopicArn") not in topics:
        raise NotTrusted("the topic is not one of JOURNEYS_SNS_TOPICS")
    cert_url = str(message.get("SigningCertURL", ""))
    if not is_sns_url(cert_url) or not urlsplit(cert_url).path.endswith(".pem"):
        raise NotTrusted("SigningCertURL is not an Amazon SNS certificate")
    try:
        sent = datetime.fromisoformat(str(message.get("Timestamp")).replace("Z", "+00:00"))
    except ValueError:
        raise NotTrusted("Timestamp is not a moment") from None
    if abs((now or datetime.now(UTC)) - sent) > MAX_AGE:
        raise NotTrusted("the message is more than an hour old")
    algorithm: hashes.HashAlgorithm
    version = str(message.get("SignatureVersion"))
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise NotTrusted(f"unknown SignatureVersion {version!r}")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError:
        raise NotTrusted("Signature is not base64") from None
    try:
        certificate = x509.load_pem_x509_certificate(await fetch_certificate(cert_url))
    except ValueError:
        raise NotTrusted("SigningCertURL does not hold a PEM certificate") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise NotTrusted("the certificate's key is not RSA")
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise NotTrusted("the signature does not verify") from None


@dataclass(frozen=True)
class SesReport:
    """One recipient's bounce or complaint, as a delivery error."""

    reference: str  # the Message-ID header the product set, else SES's message id
    kind: DeliveryErrorKind
    detail: str | None


def ses_reports(notification: dict[str, Any]) -> list[SesReport]:
    """The delivery errors in an SES notification (`Message` of the SNS message):
    Permanent bounces are hard, others soft; complaints are complaints. Deliveries
    and other types report nothing."""
    kind_of = str(notification.get("notificationType") or notification.get("eventType") or "")
    mail = notification.get("mail") or {}
    header = (mail.get("commonHeaders") or {}).get("messageId") or next(
        (
            h.get("value")
            for h in mail.get("headers") or []
            if str(h.get("name", "")).lower() == "message-id"
        ),
        None,
    )
    reference = str(header or mail.get("messageId") or "")
    if not reference:
        return []
    if kind_of == "Bounce":
        bounce = notification.get("bounce") or {}
        kind: DeliveryErrorKind = (
            "hard_bounce" if bounce.get("bounceType") == "Permanent" else "soft_bounce"
        )
        recipients = bounce.get("bouncedRecipients") or [{}]
        detail = "; ".join(
            str(r.get("diagnosticCode") or bounce.get("bounceSubType") or "") for r in recipients
        )
        return [SesReport(reference, kind, detail or None)]
    if kind_of == "Complaint":
        complaint = notification.get("complaint") or {}
        return [SesReport(reference, "complaint", complaint.get("complaintFeedbackType"))]
    return []


def parse_ses_message(message: dict[str, Any]) -> dict[str, Any]:
    try:
        notification = json.loads(str(message.get("Message", "")))
    except ValueError:
        raise NotTrusted("Message is not an SES notification") from None
    if not isinstance(notification, dict):
        raise NotTrusted("Message is not an SES notification")
    return notification


class SnsClient:
    """Fetches signing certificates (kept once fetched) and confirms subscriptions."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._certificates: dict[str, bytes] = {}
        self._timeout = timeout

    async def certificate(self, url: str) -> bytes:
        if url not in self._certificates:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(url)
                response.raise_for_status()
            self._certificates[url] = response.content
        return self._certificates[url]

    async def confirm(self, subscribe_url: str) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            (await http.get(subscribe_url)).raise_for_status()
