from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, Field

from api.deps import PoolDep, SettingsDep, TemporalDep, require_api_key
from api.errors import (
    AUTH_RESPONSES,
    NOT_FOUND_RESPONSE,
    TypedProblem,
    not_found,
    unprocessable,
    unprocessable_typed,
)
from api.outages import OUTAGE_RESPONSE
from journeys.contacts import Contact, ContactIn
from journeys.fieldtypes import coerce
from journeys.phones import normalise_phone
from journeys.schema import (
    INVALID_CURSOR,
    OUT_OF_RANGE,
    PHONE_NUMBER,
    STORED_STATE,
    UNKNOWN_REFERENCE,
)
from journeys.store.contacts import get_contact, upsert_contact
from journeys.store.dossier import Cursor, DossierEntry, dossier_of, in_utc, next_cursor
from journeys.store.fields import field_types
from journeys.store.outbox import queue_profile_change
from journeys.store.users import missing_users
from journeys.terminations import note_terminated_runs

router = APIRouter(
    prefix="/contacts",
    tags=["contacts"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)


@router.post(
    "",
    response_model=Contact,
    responses={200: {"description": "updated"}, 201: {"description": "created"}},
)
async def create_or_update_contact(
    body: ContactIn,
    pool: PoolDep,
    settings: SettingsDep,
    response: Response,
) -> Contact:
    """Create a contact, or update the one with the same `external_id`.

    Free fields with a declared type (`POST /contact-fields`) must fit it. A change
    is stored with the contact; the worker then starts the journeys entered on that
    field change, and journeys with an `exit_if` look at the contact again.
    """
    body = await _checked(pool, body, settings.phone_region)
    try:
        async with pool.acquire() as conn, conn.transaction():
            contact, created, before = await upsert_contact(conn, body)
            # What a POST can change (bounced and unsubscribed come from elsewhere).
            shown = contact.model_dump(mode="json", exclude={"fields", "bounced", "unsubscribed"})
            now = {**contact.fields, **shown}
            changed = [
                name
                for name, value in now.items()
                if name not in ("updated_at", "created_at") and (before or {}).get(name) != value
            ]
            if changed:
                # Delivered by the worker: exit_if checks, entries on a field change.
                await queue_profile_change(
                    conn, contact.id, changed, {n: now[n] for n in changed}, created
                )
    except asyncpg.ForeignKeyViolationError:
        # A user deleted between the check and the write.
        raise unprocessable(
            [(("owner",), "the owner is not a user")], kind=UNKNOWN_REFERENCE
        ) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return contact


async def _checked(pool: asyncpg.Pool, body: ContactIn, phone_region: str) -> ContactIn:
    """The body with the phone in E.164 and typed fields in their stored form; 422
    naming every misfit."""
    problems: list[TypedProblem] = []
    phone = body.phone
    if phone:
        try:
            phone = normalise_phone(phone, phone_region)
        except ValueError as exc:
            problems.append((("phone",), str(exc), PHONE_NUMBER))
    types = await field_types(pool)
    fields = dict(body.fields)
    for name, value in body.fields.items():
        if name in types:
            try:
                fields[name] = coerce(types[name], value)
            except ValueError as exc:
                problems.append(
                    (("fields", name), f"field '{name}' ({types[name]}): {exc}", STORED_STATE)
                )
    owners = {k: getattr(body, k) for k in ("owner", "service_owner") if getattr(body, k)}
    for missing in await missing_users(pool, list(set(owners.values()))):
        problems += [
            ((k,), f"user '{missing}' does not exist", UNKNOWN_REFERENCE)
            for k, v in owners.items()
            if v == missing
        ]
    if problems:
        raise unprocessable_typed(problems)
    # Only what was given: a field in the update counts as given to the upsert.
    update: dict[str, Any] = {"fields": fields} if "fields" in body.model_fields_set else {}
    if "phone" in body.model_fields_set:
        update["phone"] = phone
    return body.model_copy(update=update)


@router.get("/{contact_id}", response_model=Contact)
async def read_contact(contact_id: uuid.UUID, pool: PoolDep) -> Contact:
    contact = await get_contact(pool, contact_id)
    if contact is None:
        raise not_found(f"contact {contact_id} does not exist")
    return contact


class Dossier(BaseModel):
    contact_id: uuid.UUID
    entries: list[DossierEntry]
    next_cursor: str | None = Field(
        description="the `cursor` of the next (older) page; null on the last page"
    )


@router.get("/{contact_id}/dossier", response_model=Dossier)
async def read_dossier(
    contact_id: uuid.UUID,
    pool: PoolDep,
    client: TemporalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[datetime | None, Query(description="only entries before this moment")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="a page's `next_cursor`: the page after it")
    ] = None,
) -> Dossier:
    """Everything the product did to or for the contact, newest first: messages,
    activities, requests, sales, script calls, selection and project changes,
    journey entries, exits and profile updates."""
    try:
        after = Cursor.parse(cursor) if cursor is not None else None
    except ValueError as exc:
        raise unprocessable(
            [(("cursor",), str(exc))], prefix=("query",), kind=INVALID_CURSOR
        ) from None
    try:
        before = in_utc(before) if before is not None else None
    except ValueError as exc:
        raise unprocessable(
            [(("before",), str(exc))], prefix=("query",), kind=OUT_OF_RANGE
        ) from None
    if await get_contact(pool, contact_id) is None:
        raise not_found(f"contact {contact_id} does not exist")
    # Runs terminated from outside could not note it themselves: noted as read.
    await note_terminated_runs(pool, client, contact_id)
    entries = await dossier_of(pool, contact_id, limit, before, after)
    return Dossier(contact_id=contact_id, entries=entries, next_cursor=next_cursor(entries, limit))
