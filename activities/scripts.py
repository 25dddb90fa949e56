"""run_script: POST the contact and journey context to another system, signed.

The body is signed with HMAC-SHA256 over `<timestamp>.<body>` under a key
derived from the server secret; the receiver checks `X-Journeys-Signature`
(`sha256=<hex>`) and rejects old timestamps, so a captured call cannot be
replayed later. Every attempt is counted in `script_calls` and the outcome is
shown in the contact's dossier.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contacts import require_contact
from activities.retries import quiet_outages, redacted
from journeys.contacts import profile
from journeys.models import ScriptCallInput, ScriptCallResult
from journeys.store import crm

TIMEOUT = httpx.Timeout(20.0, connect=5.0)


def signing_key(secret: str) -> bytes:
    """The key for script signatures: derived, so the token secret itself never leaves."""
    return hmac.new(secret.encode(), b"journeys/run_script", hashlib.sha256).digest()


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class ScriptActivities:
    def __init__(self, pool: asyncpg.Pool, secret: str, http: httpx.AsyncClient) -> None:
        self.pool = pool
        self.key = signing_key(secret)
        self.http = http

    @activity.defn(name="call_script")
    @quiet_outages
    async def call_script(self, input: ScriptCallInput) -> ScriptCallResult:
        contact = await require_contact(self.pool, input.contact_id)
        await crm.start_script_call(
            self.pool,
            input.idempotency_key,
            contact.id,
            input.url,
            input.journey_key,
            input.step,
        )
        body = json.dumps(
            {
                "id": input.idempotency_key,
                "contact": profile(contact),
                "journey": {
                    "key": input.journey_key,
                    "version": input.version,
                    "step": input.step,
                    "participant": input.participant,
                },
            },
            default=str,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Journeys-Timestamp": timestamp,
            "X-Journeys-Signature": signature(self.key, timestamp, body),
            # The same on every attempt: the receiver can drop a repeat.
            "Idempotency-Key": str(uuid.uuid5(uuid.NAMESPACE_URL, input.idempotency_key)),
        }
        try:
            response = await self.http.post(input.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {redacted(str(exc))}"
            await crm.finish_script_call(self.pool, input.idempotency_key, "pending", None, error)
            raise ApplicationError(f"the script could not be reached: {error}") from None
        if response.is_success:
            await crm.finish_script_call(
                self.pool, input.idempotency_key, "succeeded", response.status_code, None
            )
            return ScriptCallResult(status="succeeded", response_status=response.status_code)
        error = f"answered {response.status_code}"
        await crm.finish_script_call(
            self.pool, input.idempotency_key, "pending", response.status_code, error
        )
        # A 4xx other than 408/429 will not change by asking again.
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise ApplicationError(f"the script {error}", non_retryable=permanent)

    @activity.defn(name="give_up_script")
    @quiet_outages
    async def give_up_script(self, input: ScriptCallInput) -> None:
        """After the last attempt: the call is `failed`, with the last error kept."""
        await crm.give_up_script_call(self.pool, input.idempotency_key)
