"""Campaigns: the list with their actions and costs; a campaign with its actions'
targets and results, the contacts of an action (unlink and link them back before it
is generated), and its costs (book one).

Every number and every change goes through the API's own functions
(`api.routes.campaigns`): the page shows what `GET /campaigns/{key}` answers.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.pages import in_words, render
from api.console.session import Reader, Writer
from api.deps import Caller, Key, PoolDep, SettingsDep
from api.routes.campaigns import (
    CampaignView,
    CostIn,
    action_contacts,
    book_cost,
    link_contact,
    read_campaign,
)
from journeys.store import campaigns
from journeys.store.contacts import get_contacts
from journeys.store.operations import get_operation

router = APIRouter(prefix="/console", include_in_schema=False)

# Campaigns on a page of the list, contacts on a page of an action's.
LISTED = 50
CONTACTS = 50
Cursor = Annotated[str | None, Query(max_length=64)]


def _money(value: float) -> str:
    return f"{Decimal(str(value)):,.2f}"


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns_page(
    request: Request,
    caller: Reader,
    pool: PoolDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    found = await campaigns.list_campaigns(pool, LISTED + 1, (page - 1) * LISTED)
    views = await asyncio.gather(*(read_campaign(c.key, pool) for c in found[:LISTED]))
    return render(
        request,
        "campaigns.html",
        caller=caller,
        section="campaigns",
        campaigns=views,
        page=page,
        more=len(found) > LISTED,
        money=_money,
    )


async def _states(pool: PoolDep, view: CampaignView) -> dict[str, str]:
    """Each action's generation in words: not generated, generating (done/total),
    failed, or generated."""
    states = {}
    for a in view.actions:
        if a.generated:
            states[a.key] = "generated"
        elif a.operation_id is None:
            states[a.key] = "not generated"
        else:
            op = await get_operation(pool, a.operation_id)
            if op is None or op.status == "running":
                progress = f" ({op.done} of {op.total})" if op and op.total is not None else ""
                states[a.key] = f"generating{progress}"
            else:
                states[a.key] = "generation failed" if op.status == "failed" else op.status
    return states


async def _campaign_page(
    request: Request,
    caller: Caller,
    pool: PoolDep,
    settings: SettingsDep,
    key: str,
    action: str | None,
    cursor: str | None,
    *,
    flashes: list[tuple[str, str]] | None = None,
    status_code: int = 200,
    cost_form: dict[str, str] | None = None,
) -> HTMLResponse:
    view = await read_campaign(key, pool)
    chosen = next((a for a in view.actions if a.key == action), None)
    if chosen is None and view.actions:
        chosen = view.actions[0]
        cursor = None  # a cursor belongs to the action it was made for
    contacts: list[dict[str, Any]] = []
    listing: Any = None
    listing_error = None
    if chosen is not None:
        try:
            listing = await action_contacts(key, chosen.key, pool, settings, cursor, CONTACTS)
        except HTTPException as exc:  # the selection's query broke, or a bad cursor
            listing_error = in_words(exc.detail)
        else:
            profiles = await get_contacts(pool, [c.contact_id for c in listing.contacts])
            contacts = [
                {"id": c.contact_id, "linked": c.linked, "profile": profiles.get(c.contact_id)}
                for c in listing.contacts
            ]
    return render(
        request,
        "campaign.html",
        caller=caller,
        section="campaigns",
        status_code=status_code,
        flashes=flashes or [],
        campaign=view,
        states=await _states(pool, view),
        chosen=chosen,
        cursor=cursor,
        listing=listing,
        listing_error=listing_error,
        contacts=contacts,
        cost_form=cost_form or {},
        money=_money,
    )


def _done(request: Request, action: str | None) -> list[tuple[str, str]]:
    """The flash of the action just done (from the redirect's query: fixed words only)."""
    done = request.query_params.get("done")
    try:
        contact = uuid.UUID(request.query_params.get("contact", ""))
    except ValueError:
        contact = None
    if done in ("unlinked", "linked") and contact is not None:
        how = "left out of" if done == "unlinked" else "taken back into"
        return [("ok", f"Contact {contact} is {how} action {action}.")]
    if done == "cost":
        return [("ok", "The cost is booked.")]
    return []


@router.get("/campaigns/{key}", response_class=HTMLResponse)
async def campaign_page(
    request: Request,
    key: Key,
    caller: Reader,
    pool: PoolDep,
    settings: SettingsDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
) -> HTMLResponse:
    return await _campaign_page(
        request, caller, pool, settings, key, action, cursor, flashes=_done(request, action)
    )


def _back(key: str, action: str, cursor: str | None, **done: str) -> str:
    query = {"action": action, **({"cursor": cursor} if cursor else {}), **done}
    return f"/console/campaigns/{key}?{urlencode(query)}"


@router.post("/campaigns/{key}/actions/{action}/contacts/{contact_id}/{verb}")
async def link_from_form(
    request: Request,
    key: Key,
    action: Key,
    contact_id: uuid.UUID,
    verb: Annotated[str, Path(pattern="^(link|unlink)$")],
    caller: Writer,
    pool: PoolDep,
    settings: SettingsDep,
    cursor: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    """Unlink a contact of the action (or link one back): `POST .../unlink|link`."""
    linked = verb == "link"
    try:
        await link_contact(key, action, contact_id, linked, pool, settings)
    except HTTPException as exc:  # not a member (404), or generated (409)
        # (No such campaign: rendering the page answers the error page, 404.)
        return await _campaign_page(
            request,
            caller,
            pool,
            settings,
            key,
            action,
            cursor,
            flashes=[("error", in_words(exc.detail))],
            status_code=exc.status_code,
        )
    done = "linked" if linked else "unlinked"
    return RedirectResponse(
        _back(key, action, cursor, done=done, contact=str(contact_id)), status_code=303
    )


@router.post("/campaigns/{key}/costs")
async def cost_from_form(
    request: Request,
    key: Key,
    caller: Writer,
    pool: PoolDep,
    settings: SettingsDep,
    description: Annotated[str, Form(max_length=1000)] = "",
    amount: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Book an actual cost (a purchase invoice; a credit is negative): `POST .../costs`."""
    try:
        body = CostIn.model_validate({"description": description, "amount": amount.strip()})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        return await _campaign_page(
            request,
            caller,
            pool,
            settings,
            key,
            None,
            None,
            flashes=[("error", f"The cost is not booked: {problems}")],
            status_code=422,
            cost_form={"description": description, "amount": amount},
        )
    await book_cost(key, body, pool)
    return RedirectResponse(f"/console/campaigns/{key}?done=cost", status_code=303)
