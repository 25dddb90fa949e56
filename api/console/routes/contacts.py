"""Contacts: search by external id or e-mail address, and one contact's page: its
profile, the journeys it entered, its messages and its dossier."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from api.console.pages import render
from api.console.session import Reader
from api.deps import PoolDep, TemporalDep
from journeys.contacts import Contact
from journeys.store.contacts import get_contact, search_contacts
from journeys.store.dossier import Cursor, dossier_of, in_utc, next_cursor
from journeys.store.enrolments import enrolments_of
from journeys.store.messages import message_log
from journeys.terminations import note_terminated_runs

router = APIRouter(prefix="/console", include_in_schema=False)

# Rows a search lists, messages and dossier lines a contact's page shows.
LISTED = 50
DOSSIER_LINES = 100


@router.get("/contacts", response_class=HTMLResponse)
async def contacts_page(
    request: Request,
    caller: Reader,
    pool: PoolDep,
    q: Annotated[str, Query(max_length=320, pattern=r"^[^\x00]*$")] = "",
) -> HTMLResponse:
    q = q.strip()
    return render(
        request,
        "contacts.html",
        caller=caller,
        section="contacts",
        q=q,
        contacts=await search_contacts(pool, q, LISTED),
        listed=LISTED,
    )


def shown(value: Any) -> str:
    """A free field's value as text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def profile_rows(contact: Contact) -> list[tuple[str, str]]:
    """The profile's columns, in the order people look for them."""
    columns = (
        ("External id", contact.external_id),
        ("E-mail", contact.email),
        ("Phone", contact.phone),
        ("First name", contact.first_name),
        ("Last name", contact.last_name),
        ("Time zone", contact.time_zone),
        ("Owner", contact.owner),
        ("Service owner", contact.service_owner),
    )
    return [(label, value or "") for label, value in columns]


@router.get("/contacts/{contact_id}", response_class=HTMLResponse)
async def contact_page(
    request: Request,
    contact_id: uuid.UUID,
    caller: Reader,
    pool: PoolDep,
    client: TemporalDep,
    before: Annotated[
        datetime | None, Query(description="dossier lines before this moment only")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="dossier lines after this one only")
    ] = None,
) -> HTMLResponse:
    try:
        after = Cursor.parse(cursor) if cursor else None
        before = in_utc(before) if before is not None else None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    contact = await get_contact(pool, contact_id)
    if contact is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"contact {contact_id} does not exist")
    await note_terminated_runs(pool, client, contact_id)
    dossier = await dossier_of(pool, contact_id, DOSSIER_LINES, before, after)
    return render(
        request,
        "contact.html",
        caller=caller,
        section="contacts",
        contact=contact,
        profile=profile_rows(contact),
        fields=sorted((name, shown(value)) for name, value in contact.fields.items()),
        enrolments=await enrolments_of(pool, contact_id),
        messages=await message_log(pool, LISTED, contact_id=contact_id),
        listed=LISTED,
        dossier=dossier,
        dossier_before=after.at if after else before,
        dossier_older=next_cursor(dossier, DOSSIER_LINES),
    )
