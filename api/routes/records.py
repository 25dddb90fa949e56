"""Record types, records and their links to contacts (seed 004, R).

A record is what contacts are linked to in a role (a performance and its ticket
holders); a selection `of` its record type selects contact-record pairs, so that a
recurring send reaches a ticket holder once per performance.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import AfterValidator, BaseModel, Field, field_validator

from api.deps import Key, PoolDep, require_api_key
from api.errors import (
    AUTH_RESPONSES,
    NOT_FOUND_RESPONSE,
    TypedProblem,
    error_response,
    not_found,
    unknown_items,
    unprocessable,
    unprocessable_typed,
)
from api.outages import OUTAGE_RESPONSE
from journeys.definition import FIELD_NAME_PATTERN, KEY_PATTERN
from journeys.fieldtypes import RecordFieldType, coerce
from journeys.schema import STORED_STATE, UNKNOWN_REFERENCE, Schema
from journeys.store import records
from journeys.store.contacts import missing_contacts
from journeys.text import StorableModel, check_storable

router = APIRouter(
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)
# A contact's role on a record; '' when the caller has none to name.
ROLE_PATTERN = r"^(?:[a-z0-9][a-z0-9_-]{0,63})?$"
Role = Annotated[str, Field(pattern=ROLE_PATTERN, examples=["ticket_holder"])]
RecordFieldName = Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]
CREATED_OR_CHANGED: dict[int | str, dict[str, Any]] = {
    200: {"description": "existed: changed"},
    201: {"description": "created"},
}


# --- record types ----------------------------------------------------------------------------


class RecordTypeIn(StorableModel):
    key: str = Field(pattern=KEY_PATTERN, examples=["performance"])
    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="the key when not given"
    )
    fields: Annotated[
        dict[RecordFieldName, RecordFieldType],
        Schema({"propertyNames": {"not": {"enum": list(records.RESERVED_RECORD_FIELDS)}}}),
    ] = Field(
        default_factory=dict,
        max_length=200,
        description="each field's type; fields declared before are kept, and keep their type",
        examples=[{"title": "text", "starts_at": "datetime"}],
    )

    @field_validator("fields", mode="after")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(value) & set(records.RESERVED_RECORD_FIELDS))
        if taken:
            raise ValueError(
                f"'{taken[0]}' is what every record has; a record type cannot declare it"
            )
        return value


@router.post(
    "/record-types",
    tags=["records"],
    status_code=201,
    response_model=records.RecordType,
    responses={
        **CREATED_OR_CHANGED,
        409: error_response("a field is declared with another type"),
    },
)
async def declare_record_type(
    body: RecordTypeIn, pool: PoolDep, response: Response
) -> records.RecordType:
    """Declare a kind of record and its fields' types, or rename it and add fields."""
    try:
        found, created = await records.upsert_record_type(pool, body.key, body.name, body.fields)
    except records.RetypedField as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    response.status_code = 201 if created else 200
    return found


@router.get("/record-types", tags=["records"], response_model=list[records.RecordType])
async def list_record_types(pool: PoolDep) -> list[records.RecordType]:
    return await records.list_record_types(pool)


@router.get("/record-types/{key}", tags=["records"], response_model=records.RecordType)
async def read_record_type(key: Key, pool: PoolDep) -> records.RecordType:
    found = await records.get_record_type(pool, key)
    if found is None:
        raise not_found(f"record type '{key}' does not exist")
    return found


# --- records ---------------------------------------------------------------------------------


class RecordIn(StorableModel):
    """A record as a client sends it; `external_id` makes the call an upsert."""

    type: str = Field(pattern=KEY_PATTERN, examples=["performance"])
    external_id: str | None = Field(default=None, min_length=1, max_length=200, examples=["p-1"])
    fields: dict[str, Any] = Field(
        default_factory=dict,
        max_length=200,
        description="values of fields the record type declares, in their type; null removes one",
        examples=[{"title": "Hamlet", "starts_at": "2026-12-03T20:00:00+01:00"}],
    )


@router.post(
    "/records",
    tags=["records"],
    status_code=201,
    response_model=records.Record,
    responses=CREATED_OR_CHANGED,
)
async def create_or_update_record(
    body: RecordIn, pool: PoolDep, response: Response
) -> records.Record:
    """Create a record, or update the one of its type with the same `external_id`
    (fields merged key by key). Fields must be declared by the type and fit it."""
    record_type = await records.get_record_type(pool, body.type)
    if record_type is None:
        raise unprocessable(
            [(("type",), f"record type '{body.type}' does not exist; declare it first")],
            kind=UNKNOWN_REFERENCE,
        )
    problems: list[TypedProblem] = []
    fields = dict(body.fields)
    for name, value in body.fields.items():
        declared = record_type.fields.get(name)
        if declared is None:
            problems.append(
                (
                    ("fields", name),
                    f"'{name}' is not a field of record type '{body.type}'",
                    UNKNOWN_REFERENCE,
                )
            )
            continue
        try:
            fields[name] = coerce(declared, value)
        except ValueError as exc:
            problems.append((("fields", name), f"field '{name}' ({declared}): {exc}", STORED_STATE))
    if problems:
        raise unprocessable_typed(problems)
    found, created = await records.upsert_record(pool, body.type, body.external_id, fields)
    response.status_code = 201 if created else 200
    return found


@router.get("/records", tags=["records"], response_model=list[records.Record])
async def list_records(
    pool: PoolDep,
    type: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
    external_id: Annotated[
        str | None, Query(min_length=1, max_length=200), AfterValidator(check_storable)
    ] = None,
    after: Annotated[uuid.UUID | None, Query(description="the last id of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[records.Record]:
    """Records in id order, of one type and with one `external_id` when given."""
    return await records.list_records(pool, type, external_id, after, limit)


@router.get("/records/{record_id}", tags=["records"], response_model=records.Record)
async def read_record(record_id: uuid.UUID, pool: PoolDep) -> records.Record:
    found = await records.get_record(pool, record_id)
    if found is None:
        raise not_found(f"record {record_id} does not exist")
    return found


# --- links -----------------------------------------------------------------------------------


class LinksIn(StorableModel):
    contact_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    role: Role = ""


class Linked(BaseModel):
    linked: int = Field(description="links that are new (linking again changes nothing)")


async def _existing(pool: PoolDep, record_id: uuid.UUID) -> None:
    if await records.get_record(pool, record_id) is None:
        raise not_found(f"record {record_id} does not exist")


@router.post("/records/{record_id}/contacts", tags=["records"], response_model=Linked)
async def link_contacts(record_id: uuid.UUID, body: LinksIn, pool: PoolDep) -> Linked:
    """Link contacts to the record in `role` (a ticket holder to a performance)."""
    await _existing(pool, record_id)
    missing = await missing_contacts(pool, body.contact_ids)
    if missing:
        raise unknown_items(
            "contact_ids", body.contact_ids, missing, lambda m: f"contact {m} does not exist"
        )
    return Linked(linked=await records.link_contacts(pool, record_id, body.contact_ids, body.role))


@router.delete(
    "/records/{record_id}/contacts/{contact_id}",
    tags=["records"],
    status_code=204,
)
async def unlink_contact(
    record_id: uuid.UUID,
    contact_id: uuid.UUID,
    pool: PoolDep,
    role: Annotated[str, Query(pattern=ROLE_PATTERN)] = "",
) -> Response:
    """Remove the contact's link in `role` ('' when not given)."""
    await _existing(pool, record_id)
    if not await records.unlink_contact(pool, record_id, contact_id, role):
        raise not_found(f"contact {contact_id} is not linked to record {record_id} as '{role}'")
    return Response(status_code=204)


@router.get(
    "/records/{record_id}/contacts", tags=["records"], response_model=list[records.RecordLink]
)
async def list_linked_contacts(
    record_id: uuid.UUID,
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[records.RecordLink]:
    """The record's contacts and their roles, in contact order (the first `limit`)."""
    await _existing(pool, record_id)
    return await records.record_links(pool, record_id, limit)
