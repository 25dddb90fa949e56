"""Amazon SES notifications through SNS: the signature checks (a certificate made here
stands in for Amazon's) and a bounce reaching a contact on the real stack."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from journeys.sns import NotTrusted, SnsClient, ses_reports, string_to_sign, verify
from tests.builders import linear_journey, mail
from tests.conftest import Stack
from tests.helpers import api_on, create_contact, enrol, publish, read_mail, wait_until_done

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"


class Signer:
    """A key and a certificate, served for CERT_URL by the fake SNS client."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
        }


class FakeSns(SnsClient):
    def __init__(self, signer: Signer) -> None:
        super().__init__()
        self.signer = signer
        self.fetched: list[str] = []
        self.confirmed: list[str] = []

    async def certificate(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.signer.pem

    async def confirm(self, subscribe_url: str) -> None:
        self.confirmed.append(subscribe_url)


def notification(ses: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(ses),
        "Timestamp": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "SigningCertURL": CERT_URL,
    }


def bounce(message_id_header: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": "x@example.com", "diagnosticCode": "smtp; 550 5.1.1 unknown"}
            ],
        },
        "mail": {
            "messageId": "0100018c-ses-own-id",
            "commonHeaders": {"messageId": message_id_header},
        },
    }


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


async def test_a_genuine_message_verifies_in_both_signature_versions(signer: Signer) -> None:
    sns = FakeSns(signer)
    for version in ("1", "2"):
        await verify(signer.sign(notification(bounce("<a@b>")), version), [TOPIC], sns.certificate)
    assert sns.fetched == [CERT_URL, CERT_URL]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"Message": json.dumps({"notificationType": "Complaint"})}, "does not verify"),
        ({"TopicArn": "arn:aws:sns:eu-west-1:1:other"}, "JOURNEYS_SNS_TOPICS"),
        ({"SigningCertURL": "https://evil.example.com/cert.pem"}, "not an Amazon SNS"),
        ({"SigningCertURL": "http://sns.eu-west-1.amazonaws.com/c.pem"}, "not an Amazon SNS"),
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"Signature": "%%%"}, "base64"),
    ],
)
async def test_a_changed_or_foreign_message_is_not_trusted(
    signer: Signer, change: dict[str, str], why: str
) -> None:
    signed = signer.sign(notification(bounce("<a@b>")))
    with pytest.raises(NotTrusted, match=why):
        await verify({**signed, **change}, [TOPIC], FakeSns(signer).certificate)


async def test_a_certificate_that_is_not_one_is_not_trusted(signer: Signer) -> None:
    async def garbage(url: str) -> bytes:
        return b"<html>not a certificate</html>"

    with pytest.raises(NotTrusted, match="PEM certificate"):
        await verify(signer.sign(notification(bounce("<a@b>"))), [TOPIC], garbage)


async def test_an_old_message_is_not_trusted(signer: Signer) -> None:
    old = signer.sign(notification(bounce("<a@b>"), at=datetime.now(UTC) - timedelta(hours=2)))
    with pytest.raises(NotTrusted, match="an hour old"):
        await verify(old, [TOPIC], FakeSns(signer).certificate)


def test_ses_kinds() -> None:
    assert [r.kind for r in ses_reports(bounce("<a@b>"))] == ["hard_bounce"]
    assert [r.kind for r in ses_reports(bounce("<a@b>", "Transient"))] == ["soft_bounce"]
    complaint = {"eventType": "Complaint", "complaint": {}, "mail": {"messageId": "ses-1"}}
    assert [(r.reference, r.kind) for r in ses_reports(complaint)] == [("ses-1", "complaint")]
    assert ses_reports({"notificationType": "Delivery", "mail": {"messageId": "x"}}) == []


async def test_an_ses_bounce_suppresses_the_address(stack: Stack, signer: Signer) -> None:
    http = stack.http
    key = f"ses-{uuid.uuid4().hex[:6]}"
    await publish(http, linear_journey(key, "SES", ("mail1", mail("Hello"))))
    email = f"ses-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Hello")
    await wait_until_done(http, key, contact)
    sns = FakeSns(signer)
    settings = stack.settings.model_copy(update={"sns_topics": [TOPIC]})
    async with api_on(settings, sns) as ses_api:
        confirm = signer.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": "t0k3n",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe",
                "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "SigningCertURL": CERT_URL,
            }
        )
        answer = await ses_api.post("/webhooks/ses", content=json.dumps(confirm))
        assert answer.json()["status"] == "subscribed" and len(sns.confirmed) == 1
        forged = {**signer.sign(notification(bounce(msg["Message-ID"]))), "Subject": "x"}
        answer = await ses_api.post("/webhooks/ses", content=json.dumps(forged))
        assert answer.status_code == 403, answer.text
        assert (await http.get(f"/contacts/{contact}")).json()["bounced"] is False
        genuine = signer.sign(notification(bounce(msg["Message-ID"])))
        answer = await ses_api.post("/webhooks/ses", content=json.dumps(genuine))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "recorded", "recorded": 1, "orphans": 0}
    assert (await http.get(f"/contacts/{contact}")).json()["bounced"] is True
    # Without topics configured the endpoint says what to set.
    off = await http.post("/webhooks/ses", content=json.dumps(genuine))
    assert off.status_code == 503 and "JOURNEYS_SNS_TOPICS" in off.json()["detail"]
