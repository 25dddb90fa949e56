"""The dev SMS sink (mounted only by `journeys dev` without `SMS_URL`): the
provider's Messages endpoint, answered the way the provider answers, and the
messages it took at `GET /dev/sms`."""

from __future__ import annotations

import base64
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header
from fastapi.responses import JSONResponse

from api.deps import SettingsDep
from journeys.phones import normalise_phone, segments
from journeys.smssink import DEV_ACCOUNT, DEV_TOKEN, list_sms, store_sms

router = APIRouter(prefix="/dev/sms", tags=["development"])
_EXPECTED = "Basic " + base64.b64encode(f"{DEV_ACCOUNT}:{DEV_TOKEN}".encode()).decode()


@router.get("", summary="messages the local SMS sink received")
async def sms_box(settings: SettingsDep) -> list[dict[str, Any]]:
    """`[{"id", "to", "sender", "text", "segments", "at"}]`, oldest first."""
    assert settings.dev_sms_dir is not None
    return list_sms(settings.dev_sms_dir)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "status": status}, status)


@router.post(
    "/2010-04-01/Accounts/{account}/Messages.json",
    summary="the SMS provider's Messages endpoint, for the worker in development",
    responses={
        201: {"description": "taken, in the provider's shape"},
        400: {"description": "a refused number, in the provider's shape"},
        401: {"description": "not the dev account's credentials, in the provider's shape"},
    },
)
async def provider_messages(
    account: str,
    settings: SettingsDep,
    to: Annotated[str, Form(alias="To")],
    sender: Annotated[str, Form(alias="From")],
    body: Annotated[str, Form(alias="Body")],
    authorization: Annotated[str, Header()] = "",
) -> JSONResponse:
    assert settings.dev_sms_dir is not None
    if account != DEV_ACCOUNT or not hmac.compare_digest(
        authorization.encode(), _EXPECTED.encode()
    ):
        return _error(401, 20003, "Authenticate")
    try:
        valid = normalise_phone(to, None) == to
    except ValueError:
        valid = False
    if not valid:
        return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not body:
        return _error(400, 21602, "Message body is required.")
    count = segments(body).count
    record = store_sms(settings.dev_sms_dir, to, sender, body, count)
    return JSONResponse(
        {
            "sid": record["id"],
            "status": "queued",
            "to": to,
            "from": sender,
            "body": body,
            "num_segments": str(count),
        },
        201,
    )
