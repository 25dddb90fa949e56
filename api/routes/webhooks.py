"""Delivery reports from mail and SMS providers: bounces, complaints, refusals.

`POST /webhooks/delivery` takes the product's own format, signed with
`X-Journeys-Signature: sha256=<hex HMAC-SHA256 of the raw body>` under
JOURNEYS_WEBHOOK_SECRET. The body is verified before it is parsed, and nothing
is stored for a body that fails either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, Literal

import httpx
import structlog
from fastapi import APIRouter, Header, HTTPException, Request, status
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from activities.twilio import (
    SMS_STATUS_PATH,
    delivery_error_kind,
    parse_sms_url,
    request_signature,
)
from api.deps import PoolDep, SettingsDep
from api.errors import (
    error_response,
    unprocessable,
    unprocessable_response,
    unprocessable_typed,
)
from api.outages import OUTAGE_RESPONSE
from journeys.definition.common import DeliveryErrorKind
from journeys.sns import (
    NotTrusted,
    SnsClient,
    is_sns_url,
    parse_ses_message,
    ses_reports,
    verify,
)
from journeys.store.delivery import record_delivery_error
from journeys.text import StorableModel

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses={**OUTAGE_RESPONSE})
log = structlog.get_logger(__name__)

# A delivery report is a few hundred bytes; a provider's batch a few kB.
MAX_REPORT_BYTES = 64 * 1024


def _not_configured(what: str) -> HTTPException:
    """503: the provider retries until the operator has set what is missing."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, what, headers={"Retry-After": "60"})


async def _report_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_REPORT_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "a report is at most 64 kB")
    return body


class DeliveryReport(StorableModel):
    message_id: str = Field(
        min_length=1,
        max_length=500,
        description="the product's message id, or the Message-ID header it gave the mail",
    )
    kind: DeliveryErrorKind
    detail: str | None = Field(default=None, max_length=2000)


class DeliveryReportOut(BaseModel):
    status: Literal["recorded", "orphan"] = Field(
        description="orphan: no message has this id; the report is kept to be looked into"
    )
    message_id: str | None = Field(description="the product's id of the message it concerns")


def _verify(settings: SettingsDep, body: bytes, signature: str | None) -> None:
    if settings.webhook_secret is None:
        raise _not_configured("delivery reports are not configured: set JOURNEYS_WEBHOOK_SECRET")
    if not signature:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing X-Journeys-Signature: sha256=<hex HMAC-SHA256 of the body>",
        )
    key = settings.webhook_secret.get_secret_value().encode()
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.strip().encode(errors="replace"), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-Journeys-Signature does not match")


@router.post(
    "/delivery",
    response_model=DeliveryReportOut,
    responses={
        401: error_response("unsigned, or the signature does not match the body"),
        413: error_response("the body is larger than 64 kB"),
        422: unprocessable_response("the body is not a delivery report"),
        503: error_response("JOURNEYS_WEBHOOK_SECRET is not set, or a backend is down"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DeliveryReport.model_json_schema()}},
        }
    },
)
async def delivery_report(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    x_journeys_signature: Annotated[str | None, Header()] = None,
) -> DeliveryReportOut:
    """A bounce, complaint or refusal for a message. A hard bounce or a complaint
    suppresses the address: no e-mail goes to it again, from any journey."""
    body = await _report_body(request)
    _verify(settings, body, x_journeys_signature)
    try:
        report = DeliveryReport.model_validate(json.loads(body))
    except ValueError as exc:  # not JSON, or not a report
        if isinstance(exc, ValidationError):
            raise unprocessable_typed(
                (tuple(str(p) for p in e["loc"]), e["msg"], e["type"]) for e in exc.errors()
            ) from None
        raise unprocessable([((), f"the body is not JSON: {exc}")]) from None
    found = await record_delivery_error(
        pool, report.message_id, report.kind, report.detail, source="webhook"
    )
    if found is None:
        log.warning("delivery.orphan", kind=report.kind)
        return DeliveryReportOut(status="orphan", message_id=None)
    return DeliveryReportOut(status="recorded", message_id=str(found))


class SesOut(BaseModel):
    status: Literal["recorded", "ignored", "subscribed"] = Field(
        description="ignored: a notification without a bounce or complaint (a delivery)"
    )
    recorded: int = Field(0, description="delivery errors recorded for known messages")
    orphans: int = Field(0, description="reports for messages this product does not know")


@router.post(
    "/ses",
    response_model=SesOut,
    responses={
        403: error_response("not a genuine SNS message of an accepted topic (says why)"),
        413: error_response("the body is larger than 64 kB"),
        422: unprocessable_response("the body is not an SNS message"),
        503: error_response("JOURNEYS_SNS_TOPICS is not set, or a backend is down"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            # SNS posts its JSON as text/plain.
            "content": {
                "text/plain": {
                    "schema": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"type": "object"},
                    }
                }
            },
        }
    },
)
async def ses_notification(request: Request, pool: PoolDep, settings: SettingsDep) -> SesOut:
    """Amazon SES bounce and complaint notifications delivered by Amazon SNS (subscribe
    this URL to the topics named in JOURNEYS_SNS_TOPICS; the subscription is confirmed
    by itself). The SNS signature is verified against Amazon's certificate."""
    if not settings.sns_topics:
        raise _not_configured("SES notifications are not configured: set JOURNEYS_SNS_TOPICS")
    body = await _report_body(request)
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise unprocessable([((), f"the body is not JSON: {exc}")]) from None
    if not isinstance(message, dict):
        raise unprocessable([((), "the body is not an SNS message")])
    sns: SnsClient = request.app.state.sns
    try:
        await verify(message, settings.sns_topics, sns.certificate)
        if message["Type"] == "SubscriptionConfirmation":
            if not is_sns_url(str(message.get("SubscribeURL", ""))):
                raise NotTrusted("SubscribeURL is not Amazon SNS")
            await sns.confirm(str(message["SubscribeURL"]))
            log.info("ses.subscribed")
            return SesOut(status="subscribed")
        if message["Type"] != "Notification":
            return SesOut(status="ignored")
        reports = ses_reports(parse_ses_message(message))
    except NotTrusted as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except httpx.HTTPError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"Amazon SNS could not be reached: {type(exc).__name__}",
            headers={"Retry-After": "5"},
        ) from None
    recorded = orphans = 0
    for r in reports:
        if await record_delivery_error(pool, r.reference, r.kind, r.detail, source="ses"):
            recorded += 1
        else:
            orphans += 1
            log.warning("delivery.orphan", kind=r.kind, source="ses")
    return SesOut(status="recorded" if reports else "ignored", recorded=recorded, orphans=orphans)


# Twilio's status callback: form fields, of which these two are needed.
_SMS_STATUS_FIELDS = {
    "type": "object",
    "required": ["MessageSid", "MessageStatus"],
    "properties": {
        "MessageSid": {"type": "string", "minLength": 1},
        "MessageStatus": {"type": "string", "minLength": 1},
        "ErrorCode": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}
_SMS_STATUS_FORM = {
    "application/x-www-form-urlencoded": {"schema": _SMS_STATUS_FIELDS},
    "multipart/form-data": {"schema": _SMS_STATUS_FIELDS},
}


class SmsStatusOut(BaseModel):
    status: Literal["recorded", "orphan", "ignored"] = Field(
        description="ignored: a status that is no delivery error (queued, sent, delivered)"
    )


@router.post(
    "/sms-status",
    response_model=SmsStatusOut,
    responses={
        403: error_response("X-Twilio-Signature is missing or does not match"),
        413: error_response("the body is larger than 64 kB"),
        422: unprocessable_response(
            "the body is not a form (a multipart body without its boundary, or one that "
            "does not parse), or MessageSid or MessageStatus is missing"
        ),
        503: error_response("SMS_URL is not set, or a backend is down"),
    },
    openapi_extra={"requestBody": {"required": True, "content": _SMS_STATUS_FORM}},
)
async def sms_status(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    x_twilio_signature: Annotated[str | None, Header()] = None,
) -> SmsStatusOut:
    """The SMS provider's status callback (Twilio's form fields, signed with the auth
    token of SMS_URL): `failed` and `undelivered` messages become delivery errors."""
    if not settings.sms_url:
        raise _not_configured("SMS status callbacks need SMS_URL (its auth token signs them)")
    await _report_body(request)  # bounded before the form is parsed (from the same bytes)
    try:
        form = await request.form()
    except StarletteHTTPException as exc:  # Starlette's 400 for a form it cannot parse
        raise unprocessable([((), f"the body is not a form: {exc.detail}")]) from None
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    token = parse_sms_url(settings.sms_url).auth_token
    url = f"{settings.public_url.rstrip('/')}{SMS_STATUS_PATH}"
    expected = request_signature(token, url, params)
    if not x_twilio_signature or not hmac.compare_digest(
        x_twilio_signature.encode(errors="replace"), expected.encode()
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "X-Twilio-Signature does not match")
    sid, state = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not state:
        raise unprocessable([(("MessageSid",), "MessageSid and MessageStatus are required")])
    kind = delivery_error_kind(state, params.get("ErrorCode"))
    if kind is None:
        return SmsStatusOut(status="ignored")
    detail = f"{state} ({params.get('ErrorCode') or 'no error code'})"
    if await record_delivery_error(pool, sid, kind, detail, source="sms-status") is None:
        log.warning("delivery.orphan", kind=kind, source="sms-status")
        return SmsStatusOut(status="orphan")
    return SmsStatusOut(status="recorded")
