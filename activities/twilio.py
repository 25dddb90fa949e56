"""SMS over a provider's REST API, in the shape of Twilio's Messages resource.

`SMS_URL` names the provider and its credentials in one URL:
`twilio://<account sid>:<auth token>@api.twilio.com` (https), or
`twilio+http://…@127.0.0.1:8026` for the development sink, which speaks the
same shape. Errors are sorted into what a retry can fix (the provider is
unavailable or rate-limits) and what it cannot (a refused number, refused
credentials); a request that was sent but got no answer may have been sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from activities.retries import redacted
from journeys.definition.common import DeliveryErrorKind

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# Where, under JOURNEYS_PUBLIC_URL, the provider reports each message's fate.
SMS_STATUS_PATH = "/webhooks/sms-status"


class SmsRejected(Exception):
    """The provider refused this message for good (a bad or blocked number, say)."""


class SmsConfigError(Exception):
    """The provider refused our credentials or account: a setting to fix, not a retry."""


class SmsProviderUnavailable(Exception):
    """The provider could not take the message now; nothing was sent."""


class SmsOutcomeUnknown(Exception):
    """The request went out and no answer came: the provider may have the message."""


class SmsProvider(Protocol):
    async def send(self, to: str, sender: str, text: str) -> str:
        """Hand the message over; the provider's id for it."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TwilioConfig:
    base_url: str
    account_sid: str
    auth_token: str


def parse_sms_url(url: str) -> TwilioConfig:
    """`twilio://SID:TOKEN@host[:port]` (https) or `twilio+http://…` (plain HTTP)."""
    parts = urlsplit(url)
    if parts.scheme not in ("twilio", "twilio+http") or not parts.hostname:
        raise ValueError(
            "SMS_URL must look like twilio://<account sid>:<auth token>@api.twilio.com"
        )
    if not parts.username or not parts.password:
        raise ValueError("SMS_URL needs the account sid and auth token as user and password")
    scheme = "http" if parts.scheme == "twilio+http" else "https"
    port = f":{parts.port}" if parts.port else ""
    return TwilioConfig(
        # A path (the dev sink's /dev/sms) is kept as the prefix of the API's paths.
        base_url=f"{scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}",
        account_sid=unquote(parts.username),
        auth_token=unquote(parts.password),
    )


class TwilioProvider:
    def __init__(self, config: TwilioConfig, status_callback: str | None = None) -> None:
        self.config = config
        # Where the provider reports what became of each message (delivered, failed).
        self.status_callback = status_callback
        self.client = httpx.AsyncClient(
            auth=(config.account_sid, config.auth_token),
            timeout=TIMEOUT,
        )

    async def send(self, to: str, sender: str, text: str) -> str:
        path = f"{self.config.base_url}/2010-04-01/Accounts/{self.config.account_sid}/Messages.json"
        try:
            data = {"To": to, "From": sender, "Body": text}
            if self.status_callback:
                data["StatusCallback"] = self.status_callback
            response = await self.client.post(path, data=data)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SmsProviderUnavailable(f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:  # sent, then the connection failed or timed out
            raise SmsOutcomeUnknown(f"{type(exc).__name__}: {exc}") from None
        if response.status_code in (200, 201):
            sid = response.json().get("sid")
            if not isinstance(sid, str):
                raise SmsOutcomeUnknown("the provider answered without a message sid")
            return sid
        reason = _reason(response)
        if response.status_code in (401, 403):
            raise SmsConfigError(f"the SMS provider refused the credentials: {reason}")
        if response.status_code == 429 or response.status_code >= 500:
            raise SmsProviderUnavailable(f"the SMS provider answered {reason}")
        raise SmsRejected(f"refused by the SMS provider: {reason}")

    async def close(self) -> None:
        await self.client.aclose()


def _reason(response: httpx.Response) -> str:
    """`400 (21211: The 'To' number is not valid)`, from the provider's error body."""
    try:
        body = response.json()
    except ValueError:
        return str(response.status_code)
    if isinstance(body, dict) and "code" in body:
        said = redacted(str(body.get("message", "")), phones=True)  # it may quote the number
        return f"{response.status_code} ({body['code']}: {said})"
    return str(response.status_code)


def request_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """The provider's signature of a callback: base64 HMAC-SHA1, under the auth token,
    of the URL followed by each form field's name and value in name order."""
    message = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# Error codes of messages that cannot reach the number (an unknown or unreachable
# destination, a landline, an opted-out recipient); other failures may pass later.
HARD_ERRORS = {"21610", "21614", "30003", "30005", "30006"}
FILTERED_ERRORS = {"30007"}  # the carrier filtered it as spam


def delivery_error_kind(status: str, error_code: str | None) -> DeliveryErrorKind | None:
    """The delivery error a status callback reports; None when it reports none."""
    if status not in ("failed", "undelivered"):
        return None
    if error_code in HARD_ERRORS:
        return "hard_bounce"
    if error_code in FILTERED_ERRORS:
        return "rejected"
    return "soft_bounce"
