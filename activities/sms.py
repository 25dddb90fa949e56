"""Sending SMS: render, count segments, deliver through the provider, exactly once
in effect (the claim, lease and outcome are `activities/sends.py`'s)."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contacts import require_contact
from activities.retries import quiet_outages, retry_later
from activities.sends import FrequencyCaps, Send
from activities.twilio import (
    SmsConfigError,
    SmsOutcomeUnknown,
    SmsProvider,
    SmsProviderUnavailable,
    SmsRejected,
)
from journeys.contacts import profile
from journeys.definition.limits import SMS_MAX_SEGMENTS
from journeys.models import NO_PHONE, SendResult, SendSmsInput
from journeys.phones import normalise_phone, segments
from journeys.settings import Settings
from journeys.templates import RenderError, render


def too_long_for_sms(text: str, max_segments: int | None) -> str | None:
    """Why a filled-in text is too long to send (the reason recorded), or None."""
    allowed = min(max_segments or SMS_MAX_SEGMENTS, SMS_MAX_SEGMENTS)
    parts = segments(text).count
    # No separate check of SMS_MAX_CHARS: ten parts hold fewer characters than that.
    if parts > allowed:
        return f"text too long: {parts} parts once filled in, the step allows {allowed}"
    return None


class SmsActivities:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, provider: SmsProvider | None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.provider = provider
        self.caps = FrequencyCaps(pool)

    @activity.defn(name="send_sms")
    @quiet_outages
    async def send_sms(self, input: SendSmsInput) -> SendResult:
        provider = self.provider
        if provider is None:
            # Retried: once SMS_URL is set and the worker restarted, the send goes on.
            raise ApplicationError(f"step '{input.step}': no SMS provider is set (SMS_URL)")
        contact = await require_contact(self.pool, input.contact_id)
        to, skip = None, None
        try:
            to = normalise_phone(contact.phone or "", self.settings.phone_region)
        except ValueError:
            skip = NO_PHONE
        if skip is None and contact.unsubscribed_at is not None:
            skip = "unsubscribed"
        send = await Send.begin(
            self.pool,
            input,
            channel="sms",
            contact_id=contact.id,
            recipient=to,
            skip=skip,
            caps=self.caps,
        )
        if isinstance(send, SendResult):
            return send
        assert to is not None
        try:
            text = render(input.text, profile(contact))
        except RenderError as exc:
            await send.fail(f"template failed: {exc}")
        # The template was checked when published; what the contact's fields add is only
        # known now. Too long a text is not sent, and the journey goes on.
        if (too_long := too_long_for_sms(text, input.max_segments)) is not None:
            return await send.skipped(too_long)
        sender = input.sender or self.settings.sms_sender

        async def through_provider() -> str:
            if not send.held():
                raise retry_later("the send's lease ran out before the provider was called")
            try:
                return await provider.send(to, sender, text)
            except SmsProviderUnavailable as exc:
                raise retry_later(f"the SMS provider is unavailable: {exc}") from None
            except SmsConfigError as exc:
                raise ApplicationError(str(exc)) from None

        return await send.deliver(
            through_provider,
            rejected=SmsRejected,
            unknown=SmsOutcomeUnknown,
            body=text,
            segments=segments(text).count,
        )
