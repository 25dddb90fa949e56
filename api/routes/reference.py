"""Reference data the steps use: declared contact fields, users, static
selections and projects (with their members), request assignment rules, files."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import Key, PoolDep, SettingsDep, require_api_key
from api.errors import (
    AUTH_RESPONSES,
    NOT_FOUND_RESPONSE,
    error_response,
    not_found,
    unknown_items,
    unprocessable,
)
from api.outages import OUTAGE_RESPONSE
from api.routes.records import ROLE_PATTERN
from journeys.contacts import Email, TimeZone
from journeys.definition import CONTACT_COLUMNS, FIELD_NAME_PATTERN, KEY_PATTERN, READ_ONLY_FIELDS
from journeys.definition.conditions import Condition
from journeys.fieldtypes import FieldType
from journeys.references import MAX_ATTACHMENTS_BYTES
from journeys.schema import (
    INVALID_CURSOR,
    STORED_STATE,
    UNKNOWN_REFERENCE,
    Schema,
    equals,
    exactly_when,
    only_with,
)
from journeys.store import crm, fields, files, groups, queries, records, recurring, users
from journeys.store.conditions_sql import CONDITION, QueryProblem
from journeys.store.contacts import missing_contacts
from journeys.store.queries import check_query
from journeys.text import StorableModel

router = APIRouter(
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)
RESERVED_FIELDS = {*CONTACT_COLUMNS, *READ_ONLY_FIELDS, "owner", "service_owner"}


# --- contact fields ----------------------------------------------------------------------


class ContactFieldIn(StorableModel):
    name: Annotated[str, Schema({"not": {"enum": sorted(RESERVED_FIELDS)}})] = Field(
        pattern=FIELD_NAME_PATTERN, examples=["score"]
    )
    type: FieldType

    @model_validator(mode="after")
    def _free_field(self) -> ContactFieldIn:
        if self.name in RESERVED_FIELDS:
            raise ValueError(f"'{self.name}' is a built-in contact field, not a free one")
        return self


@router.post(
    "/contact-fields",
    tags=["contact fields"],
    status_code=201,
    response_model=ContactFieldIn,
    responses={
        200: {"description": "declared before with this type"},
        409: error_response("declared before with another type"),
    },
)
async def declare_contact_field(
    body: ContactFieldIn, pool: PoolDep, response: Response
) -> ContactFieldIn:
    """Declare the type of a free field; contacts and journeys must then fit it."""
    stored, created = await fields.declare_field(pool, body.name, body.type)
    if stored != body.type:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"field '{body.name}' is declared as {stored}; it cannot become {body.type}",
        )
    response.status_code = 201 if created else 200
    return body


@router.get("/contact-fields", tags=["contact fields"], response_model=list[ContactFieldIn])
async def list_contact_fields(pool: PoolDep) -> list[ContactFieldIn]:
    return [
        ContactFieldIn(name=n, type=t) for n, t in sorted((await fields.field_types(pool)).items())
    ]


# --- users --------------------------------------------------------------------------------


class UserIn(StorableModel):
    key: str = Field(pattern=KEY_PATTERN, examples=["sam"])
    name: str = Field(min_length=1, max_length=200)
    email: Email
    time_zone: TimeZone = "UTC"


@router.post(
    "/users",
    tags=["users"],
    response_model=users.User,
    responses={200: {"description": "updated"}, 201: {"description": "created"}},
)
async def create_or_update_user(body: UserIn, pool: PoolDep, response: Response) -> users.User:
    """A colleague who can own contacts and receive records and notifications."""
    user, created = await users.upsert_user(pool, body.key, body.name, body.email, body.time_zone)
    response.status_code = 201 if created else 200
    return user


@router.get("/users", tags=["users"], response_model=list[users.User])
async def list_all_users(pool: PoolDep) -> list[users.User]:
    return await users.list_users(pool)


@router.get("/users/{key}", tags=["users"], response_model=users.User)
async def read_user(key: Key, pool: PoolDep) -> users.User:
    user = await users.get_user(pool, key)
    if user is None:
        raise not_found(f"user '{key}' does not exist")
    return user


# --- request assignment rules ---------------------------------------------------------------


class RequestRuleIn(StorableModel):
    category: str = Field(min_length=1, max_length=100)
    members: list[Annotated[str, Field(pattern=KEY_PATTERN)]] = Field(min_length=1)


@router.post("/request-rules", tags=["users"], response_model=RequestRuleIn)
async def set_request_rule(body: RequestRuleIn, pool: PoolDep) -> RequestRuleIn:
    """Requests of this category with `"owner": {"kind": "auto"}` go round robin to
    these users."""
    missing = await users.missing_users(pool, body.members)
    if missing:
        raise unknown_items(
            "members", body.members, missing, lambda m: f"user '{m}' does not exist"
        )
    await crm.set_rotation(pool, body.category, body.members)
    return body


# --- selections and projects ----------------------------------------------------------------


class GroupIn(StorableModel):
    key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class SelectionIn(GroupIn):
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                exactly_when(equals("type", "query"), "query"),
                only_with("of", "query"),
                only_with("role", "of"),
            ]
        }
    )

    type: Literal["static", "query"] = Field(
        description="static: members are added and removed; query: members are the "
        "contacts `query` finds when the selection is used"
    )
    query: Condition | None = Field(
        default=None,
        description="a query selection's condition: the language of `branch` (fields, "
        "selection and project membership, all/any/not) plus message history "
        "(`received`) and `anniversary`; in a selection `of` records, the record's "
        "fields (`record_field`, with `within_next` and `within_last` for dates)",
        examples=[{"field": "country", "op": "eq", "value": "NL"}],
    )
    of: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="a record type: the selection selects contact-record pairs (a contact "
        "and a record it is linked to), and its query may ask about the record "
        "(`record_field`); used as a membership, a contact with at least one pair",
        examples=["performance"],
    )
    role: str | None = Field(
        default=None,
        pattern=ROLE_PATTERN,
        description="with `of`: only links in this role (any role when not given)",
        examples=["ticket_holder"],
    )

    @model_validator(mode="after")
    def _query_with_type(self) -> SelectionIn:
        if (self.type == "query") != (self.query is not None):
            raise ValueError("give 'query' exactly when the type is 'query'")
        if self.of is not None and self.type != "query":
            raise ValueError("'of' is for query selections: their query finds the pairs")
        if self.role is not None and self.of is None:
            raise ValueError("'role' is a role on the records of 'of': give it with 'of'")
        return self


class GroupOut(BaseModel):
    key: str
    name: str
    type: str
    created_at: datetime
    query: dict[str, Any] | None = Field(default=None, description="a query selection's")
    of: str | None = Field(default=None, description="a selection of records: the record type")
    role: str | None = Field(default=None, description="a selection of records: the role")


class Count(BaseModel):
    count: int = Field(description="contacts")
    pairs: int | None = Field(
        default=None, description="a selection of records: its contact-record pairs"
    )


class Members(BaseModel):
    contact_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)


class MembersPage(BaseModel):
    contact_ids: list[uuid.UUID]
    count: int = Field(description="all members")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class MembersAdded(BaseModel):
    added: int


def _group_routes(kind: groups.Kind, path: str, model: type[GroupIn]) -> None:
    tag = f"{kind}s"
    query_conflict: dict[int | str, dict[str, Any]] = (
        {
            409: error_response(
                "a query selection: its members are whom its query finds, "
                "and it names what no longer exists"
            )
        }
        if kind == "selection"
        else {}
    )

    async def create(
        body: GroupIn, pool: PoolDep, settings: SettingsDep, response: Response
    ) -> GroupOut:
        query, of, role = None, None, None
        if isinstance(body, SelectionIn):
            earlier = await groups.get_group(pool, kind, body.key)
            if earlier is not None and earlier.type != body.type:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"selection '{body.key}' is a {earlier.type} selection; "
                    f"it cannot become a {body.type} one (use a new key)",
                )
            of, role = body.of, body.role
            if of is not None and await records.get_record_type(pool, of) is None:
                raise unprocessable(
                    [(("of",), f"record type '{of}' does not exist")], kind=UNKNOWN_REFERENCE
                )
            if body.query is not None:
                try:
                    await check_query(
                        pool, body.key, body.query, settings.default_time_zone, of, role
                    )
                except QueryProblem as exc:
                    raise unprocessable([(("query", *exc.loc), str(exc))], kind=exc.kind) from None
                # Only what this change breaks: a send already broken by another
                # selection's change made outside the API is that run's concern.
                zone = settings.default_time_zone
                before = {key for key, _ in await recurring.broken_exclusions(pool, zone)}
                broken = [
                    (send, why)
                    for send, why in await recurring.broken_exclusions(
                        pool, zone, {body.key: body.query}
                    )
                    if send not in before
                ]
                if broken:
                    raise unprocessable(
                        [
                            (("query",), f"recurring send '{send}' uses it: {why}")
                            for send, why in broken
                        ],
                        kind=STORED_STATE,
                    )
                query = CONDITION.dump_python(
                    body.query, mode="json", by_alias=True, exclude_none=True
                )
        group, created = await groups.upsert_group(
            pool, kind, body.key, body.name, getattr(body, "type", "static"), query, of, role
        )
        response.status_code = 201 if created else 200
        return GroupOut(**group.__dict__)

    create.__annotations__["body"] = model
    router.post(
        path,
        tags=[tag],
        response_model=GroupOut,
        summary=f"create or change a {kind}",
        responses={
            200: {"description": "changed"},
            201: {"description": "created"},
            409: error_response("the selection exists with the other type"),
        },
    )(create)

    @router.get(path, tags=[tag], response_model=list[GroupOut], summary=f"list {kind}s")
    async def list_all(pool: PoolDep) -> list[GroupOut]:
        return [GroupOut(**g.__dict__) for g in await groups.list_groups(pool, kind)]

    async def existing(pool: PoolDep, key: str) -> None:
        if await groups.get_group(pool, kind, key) is None:
            raise not_found(f"{kind} '{key}' does not exist")

    @router.get(f"{path}/{{key}}", tags=[tag], response_model=GroupOut, summary=f"one {kind}")
    async def read(key: Key, pool: PoolDep) -> GroupOut:
        group = await groups.get_group(pool, kind, key)
        if group is None:
            raise not_found(f"{kind} '{key}' does not exist")
        return GroupOut(**group.__dict__)

    @router.post(
        f"{path}/{{key}}/members",
        tags=[tag],
        response_model=MembersAdded,
        summary=f"add contacts to a {kind}",
        responses=query_conflict,
    )
    async def add(key: Key, body: Members, pool: PoolDep) -> MembersAdded:
        await existing(pool, key)
        missing = await missing_contacts(pool, body.contact_ids)
        if missing:
            raise unknown_items(
                "contact_ids", body.contact_ids, missing, lambda m: f"contact {m} does not exist"
            )
        try:
            added = await groups.add_members(pool, kind, key, body.contact_ids)
        except groups.QuerySelection as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return MembersAdded(added=added)

    @router.delete(
        f"{path}/{{key}}/members/{{contact_id}}",
        tags=[tag],
        status_code=204,
        summary=f"remove a contact from a {kind}",
        responses=query_conflict,
    )
    async def remove(key: Key, contact_id: uuid.UUID, pool: PoolDep) -> Response:
        await existing(pool, key)
        try:
            changed = await groups.change_member(pool, kind, key, contact_id, add=False)
        except groups.QuerySelection as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        if not changed:
            raise not_found(f"contact {contact_id} is not in {kind} '{key}'")
        return Response(status_code=204)

    @router.get(
        f"{path}/{{key}}/members",
        tags=[tag],
        response_model=MembersPage,
        summary=f"the members of a {kind}, a page at a time",
        responses=query_conflict,
    )
    async def members(
        key: Key,
        pool: PoolDep,
        settings: SettingsDep,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> MembersPage:
        await existing(pool, key)
        try:
            if kind == "selection":
                page = await queries.selection_page(
                    pool, key, cursor, limit, settings.default_time_zone
                )
            else:
                page = await groups.members_page(pool, kind, key, cursor, limit)
        except QueryProblem as exc:
            raise _no_longer_compiles(key, exc) from None
        except ValueError as exc:
            raise unprocessable(
                [(("cursor",), str(exc))], prefix=("query",), kind=INVALID_CURSOR
            ) from None
        return MembersPage(**page.__dict__)


_group_routes("selection", "/selections", SelectionIn)


def _no_longer_compiles(key: str, exc: QueryProblem) -> HTTPException:
    """A stored query that no longer compiles: a field or selection it names was dropped."""
    return HTTPException(
        status.HTTP_409_CONFLICT, f"selection '{key}' cannot be used as it is: {exc}"
    )


@router.get(
    "/selections/{key}/count",
    tags=["selections"],
    response_model=Count,
    response_model_exclude_none=True,
    responses={409: error_response("the selection's query names what no longer exists")},
)
async def count_selection(key: Key, pool: PoolDep, settings: SettingsDep) -> Count:
    """How many contacts the selection holds now (a query selection: finds now), and for
    a selection of records how many contact-record pairs."""
    group = await groups.get_group(pool, "selection", key)
    if group is None:
        raise not_found(f"selection '{key}' does not exist")
    zone = settings.default_time_zone
    try:
        count = await queries.count_selection(pool, key, zone)
        pairs = await queries.count_pairs(pool, key, zone) if group.of is not None else None
        return Count(count=count, pairs=pairs)
    except QueryProblem as exc:
        raise _no_longer_compiles(key, exc) from None


_group_routes("project", "/projects", GroupIn)


# --- files -----------------------------------------------------------------------------------


@router.post(
    "/files",
    tags=["files"],
    status_code=201,
    response_model=files.FileMeta,
    responses={413: error_response("the file is larger than 25 MB")},
    # The upload is the one body larger than the API's 8 MB: a file plus multipart overhead.
    max_body_size=MAX_ATTACHMENTS_BYTES + 1024 * 1024,
)
async def upload_file(file: UploadFile, pool: PoolDep) -> files.FileMeta:
    """A file to attach to mails (`send_email`'s `attachments`): 25 MB at most."""
    data = await file.read(MAX_ATTACHMENTS_BYTES + 1)
    if len(data) > MAX_ATTACHMENTS_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            "the file is larger than 25 MB, the most a mail takes",
        )
    name = (file.filename or "file").rsplit("/", 1)[-1].rsplit("\\", 1)[-1][:200] or "file"
    return await files.store_file(pool, name, file.content_type or "application/octet-stream", data)


@router.get("/files/{file_id}", tags=["files"], response_model=files.FileMeta)
async def read_file(file_id: uuid.UUID, pool: PoolDep) -> files.FileMeta:
    found = await files.get_files(pool, [str(file_id)])
    if not found:
        raise not_found(f"file {file_id} does not exist")
    return found[0]
