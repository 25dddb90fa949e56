"""Campaigns (seed 003): actions over a selection that generate a record per contact (or
one for the whole action), mail or enrol them, and count what it all cost."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import WithJsonSchema

from api.deps import Key, PoolDep, SettingsDep, TemporalDep, require_api_key
from api.errors import (
    AUTH_RESPONSES,
    NOT_FOUND_RESPONSE,
    error_response,
    not_found,
    unprocessable,
)
from api.mail import checked_message_journey
from api.outages import OUTAGE_RESPONSE
from api.route_keys import key_problems
from api.routes.journeys import OperationStarted
from journeys.definition import KEY_PATTERN
from journeys.message_journeys import mail_journey_key
from journeys.operations import start_operation
from journeys.schema import (
    INVALID_CURSOR,
    MAIL_MESSAGE_SCHEMA,
    UNKNOWN_REFERENCE,
    decimal_schema,
    not_all_of,
)
from journeys.store import campaigns, groups
from journeys.store.conditions_sql import QueryProblem
from journeys.store.journeys import get_journey, publish
from journeys.store.operations import get_operation
from journeys.store.queries import selection_sql
from journeys.text import StorableModel

router = APIRouter(
    prefix="/campaigns",
    tags=["campaigns"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2),
    WithJsonSchema(decimal_schema(12, 2, negative=False)),
]
GENERATED = error_response("the action was generated: it and its contacts are fixed")


class CampaignIn(StorableModel):
    key: str = Field(pattern=KEY_PATTERN, examples=["spring"])
    name: str = Field(min_length=1, max_length=200, examples=["Spring seminar"])
    fixed_cost: Money = Decimal(0)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217")


class ActionIn(StorableModel):
    model_config = ConfigDict(json_schema_extra=not_all_of("message", "journey"))

    key: str = Field(pattern=KEY_PATTERN, examples=["invite"])
    selection: str = Field(pattern=KEY_PATTERN, description="whom the action is for")
    record_type: str = Field(
        min_length=1, max_length=64, examples=["outgoing_mail"], description="the record's type"
    )
    subject: str = Field(min_length=1, max_length=200, examples=["Invitation"])
    per_destination: bool = Field(
        default=True,
        description="a record in each contact's dossier; false: one for the whole action",
    )
    done: bool = Field(default=False, description="the records are created as done")
    cost_per_contact: Annotated[
        Decimal,
        Field(ge=0, max_digits=14, decimal_places=4),
        WithJsonSchema(decimal_schema(10, 4, negative=False)),
    ] = Decimal(0)
    message: Annotated[dict[str, Any], WithJsonSchema(MAIL_MESSAGE_SCHEMA)] | None = Field(
        default=None,
        description="mail each destination: the fields of a send_email step (subject, html, "
        "text, sender, attachments, follow_ups, listen, link_actions)",
        examples=[{"subject": "You are invited, {{ contact.first_name }}", "html": "<p>...</p>"}],
    )
    journey: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="or: enrol each destination in this journey"
    )

    @model_validator(mode="after")
    def _mail_or_journey(self) -> ActionIn:
        if self.message is not None and self.journey is not None:
            raise ValueError("give 'message' or 'journey', not both")
        return self


class CostIn(StorableModel):
    description: str = Field(min_length=1, max_length=200, examples=["Printing, invoice 2026-114"])
    amount: Annotated[
        Decimal,
        Field(max_digits=14, decimal_places=2),
        WithJsonSchema(decimal_schema(12, 2, negative=True)),
    ]


class Cost(BaseModel):
    id: int
    description: str
    amount: float
    at: datetime


class ActionView(BaseModel):
    key: str
    selection: str
    record_type: str
    subject: str
    per_destination: bool
    done: bool
    cost_per_contact: float
    mail_journey: str | None = Field(description="the journey the action's mail is sent from")
    journey: str | None
    operation_id: uuid.UUID | None = Field(description="the generation, once asked for")
    generated: bool
    generated_at: datetime | None
    contacts: int | None = Field(description="contacts reached, once generated")
    variable_cost: float = Field(description="contacts reached times the cost per contact")
    results: dict[str, int] = Field(
        description="of the mail: sent, opened, clicked, bounced; of a generation: its counts"
    )


class CampaignView(BaseModel):
    key: str
    name: str
    currency: str
    fixed_cost: float
    variable_cost: float = Field(description="the actions' variable costs together")
    actual_cost: float = Field(description="the purchase invoices booked (POST .../costs)")
    total_cost: float = Field(description="fixed + variable + actual")
    actions: list[ActionView]
    costs: list[Cost]
    created_at: datetime


class LinkedContact(BaseModel):
    contact_id: uuid.UUID
    linked: bool


class LinkedPage(BaseModel):
    contacts: list[LinkedContact]
    count: int = Field(description="members of the selection now")
    unlinked: int
    next_cursor: str | None


def _money(value: Decimal) -> float:
    return float(round(value, 2))


def _cost(row: Any) -> Cost:
    return Cost(
        id=row["id"], description=row["description"], amount=_money(row["amount"]), at=row["at"]
    )


async def _campaign(pool: PoolDep, key: str) -> campaigns.Campaign:
    campaign = await campaigns.get_campaign(pool, key)
    if campaign is None:
        raise not_found(f"campaign '{key}' does not exist")
    return campaign


async def _action(pool: PoolDep, key: str, action_key: str) -> campaigns.Action:
    await _campaign(pool, key)
    action = await campaigns.get_action(pool, key, action_key)
    if action is None:
        raise not_found(f"campaign '{key}' has no action '{action_key}'")
    return action


async def _view(pool: PoolDep, campaign: campaigns.Campaign) -> CampaignView:
    actions = []
    for a in await campaigns.actions_of(pool, campaign.key):
        variable = (a.contacts or 0) * a.cost_per_contact
        results: dict[str, int] = {}
        if a.mail_journey:
            results = await campaigns.results_of(pool, a.mail_journey)
        elif a.operation_id:
            op = await get_operation(pool, a.operation_id)
            results = op.counts if op else {}
        actions.append(
            ActionView(
                key=a.key,
                selection=a.selection_key,
                record_type=a.record_type,
                subject=a.subject,
                per_destination=a.per_destination,
                done=a.done,
                cost_per_contact=float(a.cost_per_contact),
                mail_journey=a.mail_journey,
                journey=a.journey_key,
                operation_id=a.operation_id,
                generated=a.generated_at is not None,
                generated_at=a.generated_at,
                contacts=a.contacts,
                variable_cost=_money(variable),
                results=results,
            )
        )
    costs = await campaigns.costs_of(pool, campaign.key)
    variable = sum((Decimal(str(a.variable_cost)) for a in actions), Decimal(0))
    actual = sum((r["amount"] for r in costs), Decimal(0))
    return CampaignView(
        key=campaign.key,
        name=campaign.name,
        currency=campaign.currency,
        fixed_cost=_money(campaign.fixed_cost),
        variable_cost=_money(variable),
        actual_cost=_money(actual),
        total_cost=_money(campaign.fixed_cost + variable + actual),
        actions=actions,
        costs=[
            Cost(id=r["id"], description=r["description"], amount=_money(r["amount"]), at=r["at"])
            for r in costs
        ],
        created_at=campaign.created_at,
    )


@router.post(
    "",
    response_model=CampaignView,
    responses={200: {"description": "changed"}, 201: {"description": "created"}},
)
async def create_campaign(
    body: CampaignIn, request: Request, pool: PoolDep, response: Response
) -> CampaignView:
    """Create the campaign, or change its name, fixed cost or currency."""
    if taken := key_problems(request.app, "campaigns", body.key, "campaign"):
        raise unprocessable(taken)
    campaign, created = await campaigns.upsert_campaign(
        pool, body.key, body.name, body.fixed_cost, body.currency
    )
    response.status_code = 201 if created else 200
    return await _view(pool, campaign)


@router.get("/{key}", response_model=CampaignView)
async def read_campaign(key: Key, pool: PoolDep) -> CampaignView:
    """The campaign with its actions (generated or not, contacts reached, variable cost,
    results), its costs and their total."""
    return await _view(pool, await _campaign(pool, key))


@router.post(
    "/{key}/actions",
    response_model=ActionView,
    responses={
        200: {"description": "changed"},
        201: {"description": "created"},
        409: GENERATED,
    },
)
async def create_action(
    key: Key, body: ActionIn, request: Request, pool: PoolDep, response: Response
) -> ActionView:
    """Create the action, or change it until it is generated. A `message` is checked as a
    journey's send_email step is, and published as the action's mail journey."""
    if taken := key_problems(request.app, "actions", body.key, "campaign action"):
        raise unprocessable(taken)
    campaign = await _campaign(pool, key)
    earlier = await campaigns.get_action(pool, key, body.key)
    if earlier is not None and earlier.operation_id is not None:
        generation = await get_operation(pool, earlier.operation_id)
        if generation is None or generation.status != "failed":
            raise HTTPException(status.HTTP_409_CONFLICT, f"action '{body.key}' was generated")
    if await groups.get_group(pool, "selection", body.selection) is None:
        raise unprocessable(
            [(("selection",), f"selection '{body.selection}' does not exist")],
            kind=UNKNOWN_REFERENCE,
        )
    if body.journey is not None and await get_journey(pool, body.journey) is None:
        raise unprocessable(
            [(("journey",), f"journey '{body.journey}' does not exist")], kind=UNKNOWN_REFERENCE
        )
    mail_key = None
    if body.message is not None:
        definition = await checked_message_journey(
            pool,
            mail_journey_key(campaign.key, body.key),
            f"{campaign.name}: {body.key}",
            body.message,
        )
        mail_key = (await publish(pool, definition)).key
    try:
        action, created = await campaigns.upsert_action(
            pool,
            key,
            body.key,
            {
                "selection_key": body.selection,
                "record_type": body.record_type,
                "subject": body.subject,
                "per_destination": body.per_destination,
                "done": body.done,
                "cost_per_contact": body.cost_per_contact,
                "mail_journey": mail_key,
                "journey_key": body.journey,
            },
        )
    except campaigns.AlreadyGenerated as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    response.status_code = 201 if created else 200
    view = await _view(pool, campaign)
    return next(a for a in view.actions if a.key == action.key)


@router.get(
    "/{key}/actions/{action}/contacts",
    response_model=LinkedPage,
    responses={409: error_response("the selection's query names what no longer exists")},
)
async def action_contacts(
    key: Key,
    action: Key,
    pool: PoolDep,
    settings: SettingsDep,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LinkedPage:
    """The selection's members now, each linked (included) or not, a page at a time."""
    found = await _action(pool, key, action)
    try:
        members = await selection_sql(pool, found.selection_key, settings.default_time_zone)
        page = await campaigns.link_page(pool, key, action, members, cursor, limit)
    except QueryProblem as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ValueError as exc:
        raise unprocessable(
            [(("cursor",), str(exc))], prefix=("query",), kind=INVALID_CURSOR
        ) from None
    return LinkedPage(
        contacts=[LinkedContact(contact_id=c, linked=linked) for c, linked in page.contacts],
        count=page.count,
        unlinked=page.unlinked,
        next_cursor=page.next_cursor,
    )


async def link_contact(
    key: str, action: str, contact_id: uuid.UUID, linked: bool, pool: PoolDep, settings: SettingsDep
) -> LinkedContact:
    """Link (include) or unlink (exclude) a member of the action's selection, before
    generating: 404 unless a member, 409 once generated (the API's and the console's)."""
    found = await _action(pool, key, action)
    try:
        members = await selection_sql(pool, found.selection_key, settings.default_time_zone)
    except QueryProblem as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if not await campaigns.is_member(pool, members, contact_id):
        raise not_found(f"contact {contact_id} is not in selection '{found.selection_key}'")
    try:
        await campaigns.set_link(pool, key, action, contact_id, linked)
    except campaigns.AlreadyGenerated as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return LinkedContact(contact_id=contact_id, linked=linked)


def _link_route(verb: str, linked: bool, doc: str) -> None:
    async def change(
        key: Key, action: Key, contact_id: uuid.UUID, pool: PoolDep, settings: SettingsDep
    ) -> LinkedContact:
        return await link_contact(key, action, contact_id, linked, pool, settings)

    change.__doc__ = doc
    change.__name__ = f"{verb}_contact"
    router.post(
        f"/{{key}}/actions/{{action}}/contacts/{{contact_id}}/{verb}",
        response_model=LinkedContact,
        responses={409: GENERATED},
    )(change)


_link_route(
    "unlink", False, "Leave a member of the selection out of this action (before generating)."
)
_link_route("link", True, "Take an unlinked member back into this action (before generating).")


@router.post(
    "/{key}/actions/{action}/generate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationStarted,
    responses={409: error_response("the selection's query names what no longer exists")},
)
async def generate_action(
    key: Key, action: Key, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> OperationStarted:
    """Generate the action in the background: its targets (the selection now, less the
    unlinked) are frozen, then each gets its record, and its mail or enrolment. Asking
    again answers the same operation: nothing is generated twice. After a generation
    that failed (the selection's query broke, say), the action can be changed and
    generated again; what the failed one did is not done twice."""
    found = await _action(pool, key, action)
    try:
        await selection_sql(pool, found.selection_key, settings.default_time_zone)
    except QueryProblem as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    subject: dict[str, Any] = {"campaign": key, "action": action, "selection": found.selection_key}
    if found.mail_journey:
        mail = await get_journey(pool, found.mail_journey)
        subject["mail_version"] = mail.version if mail else None
    request_key = f"generate/{key}/{action}"
    failed = None
    if found.operation_id is not None:
        earlier = await get_operation(pool, found.operation_id)
        if earlier is not None and earlier.status == "failed":
            failed = earlier.id  # generating again after a failure is a new operation
            request_key = f"{request_key}/after/{failed}"

    async def fix_contacts(op_id: uuid.UUID) -> None:
        await campaigns.mark_generating(pool, key, action, op_id, failed)

    op = await start_operation(
        client,
        pool,
        settings.task_queue,
        "generate_action",
        subject,
        request_key,
        f"Generate campaign {key}, action {action}",
        before_start=fix_contacts,
    )
    return OperationStarted(operation_id=op.id, status=op.status)


@router.post("/{key}/costs", status_code=status.HTTP_201_CREATED, response_model=Cost)
async def book_cost(key: Key, body: CostIn, pool: PoolDep) -> Cost:
    """Book an actual cost (a purchase invoice) on the campaign; a credit is negative."""
    await _campaign(pool, key)
    row = await campaigns.add_cost(pool, key, body.description, body.amount)
    return Cost(
        id=row["id"], description=row["description"], amount=_money(row["amount"]), at=row["at"]
    )
