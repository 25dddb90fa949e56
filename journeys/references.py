"""Publish-time checks against what is stored: selections, projects, users, files
and the declared types of contact fields. The graph checks need no database and
live in `journeys.definition.graph`; these run in the API before publishing."""

from __future__ import annotations

from typing import Any

import asyncpg

from journeys.definition import (
    AddToProject,
    AddToSelection,
    Branch,
    CreateActivity,
    CreateRequest,
    CreateSale,
    JourneyDefinition,
    Notify,
    Problem,
    RemoveFromProject,
    RemoveFromSelection,
    UpdateContact,
    Wait,
    condition_parts,
)
from journeys.definition.common import CONTACT_COLUMNS, READ_ONLY_FIELDS
from journeys.definition.conditions import Anniversary, Condition, FieldIs, InProject, InSelection
from journeys.definition.graph import every_step
from journeys.definition.journey import FieldChangeEntry, SelectionEntry
from journeys.definition.steps.crm import UserOwner
from journeys.definition.steps.profile import OP_FIELD_TYPES
from journeys.fieldtypes import coerce
from journeys.store import fields, files, groups, users
from journeys.store.conditions_sql import DATE_TYPES

# The most a message's attachments may weigh together (what mail servers accept).
MAX_ATTACHMENTS_BYTES = 25 * 1024 * 1024


def condition_places(defn: JourneyDefinition) -> list[tuple[tuple[str | int, ...], Condition]]:
    """Every condition of the journey with its place: `exit_if`, each branch's `if`, and
    each follow-up's `schedule_if` and `run_if` (in nested follow-ups too), and the
    entry's `schedule_if` and `run_if`."""
    found: list[tuple[tuple[str | int, ...], Condition]] = []
    if defn.exit_if is not None:
        found.append((("exit_if",), defn.exit_if))
    for name in ("schedule_if", "run_if"):  # an entry's (event, field change)
        if (cond := getattr(defn.entry, name, None)) is not None:
            found.append((("entry", name), cond))
    for prefix, sid, step in every_step(defn.steps):
        loc: tuple[str | int, ...] = (*prefix, "steps", sid)
        for i, rule in enumerate(getattr(step, "follow_ups", None) or []):
            for name in ("schedule_if", "run_if"):
                if getattr(rule, name) is not None:
                    found.append(((*loc, "follow_ups", i, name), getattr(rule, name)))
        if isinstance(step, Branch):
            found.append(((*loc, "if"), step.if_))
    return found


async def reference_problems(pool: asyncpg.Pool, defn: JourneyDefinition) -> list[Problem]:
    problems: list[Problem] = []
    wanted: dict[groups.Kind, dict[str, list[tuple[str | int, ...]]]] = {
        "selection": {},
        "project": {},
    }
    wanted_users: dict[str, list[tuple[str | int, ...]]] = {}
    types = await fields.field_types(pool)
    for place, cond in condition_places(defn):
        for leaf in condition_parts(cond):
            if isinstance(leaf, InSelection):
                wanted["selection"].setdefault(leaf.selection, []).append(place)
            elif isinstance(leaf, InProject):
                wanted["project"].setdefault(leaf.project, []).append(place)
            elif isinstance(leaf, Anniversary) and types.get(leaf.anniversary) not in DATE_TYPES:
                # Asked of the database, which can only answer for a declared date.
                problems.append(
                    (
                        place,
                        f"{_where(place)}anniversary: '{leaf.anniversary}' is not a contact field"
                        " of type date or datetime (POST /contact-fields)",
                    )
                )
    if isinstance(defn.entry, SelectionEntry):
        wanted["selection"].setdefault(defn.entry.selection, []).append(("entry", "selection"))
    for prefix, sid, step in every_step(defn.steps):
        loc: tuple[str | int, ...] = (*prefix, "steps", sid)
        if isinstance(step, (AddToSelection, RemoveFromSelection)):
            wanted["selection"].setdefault(step.selection, []).append((*loc, "selection"))
        elif isinstance(step, (AddToProject, RemoveFromProject)):
            wanted["project"].setdefault(step.project, []).append((*loc, "project"))
        elif isinstance(step, (CreateActivity, CreateRequest, CreateSale)):
            if isinstance(step.owner, UserOwner):
                wanted_users.setdefault(step.owner.user, []).append((*loc, "owner", "user"))
        elif isinstance(step, Notify) and step.to_user is not None:
            wanted_users.setdefault(step.to_user, []).append((*loc, "to"))
        elif isinstance(step, UpdateContact):
            problems += _update_problems(loc, sid, step, types)
        elif isinstance(step, Wait) and step.until_field in types:
            declared = types[step.until_field]
            if declared not in DATE_TYPES:
                problems.append(
                    (
                        (*loc, "until_field"),
                        f"step '{sid}': until_field: '{step.until_field}' is a {declared}"
                        " field, not a date or datetime",
                    )
                )
        attachments = getattr(step, "attachments", None)
        if attachments:
            problems += await _attachment_problems(pool, loc, sid, attachments)
    for kind, keys in wanted.items():
        known = await groups.existing_keys(pool, kind, list(keys))
        for key, places in keys.items():
            if key not in known:
                problems += [
                    (place, f"{_where(place)}{kind} '{key}' does not exist") for place in places
                ]
    for key, places in wanted_users.items():
        if await users.get_user(pool, key) is None:
            problems += [(place, f"{_where(place)}user '{key}' does not exist") for place in places]
    return problems


async def field_warnings(pool: asyncpg.Pool, defn: JourneyDefinition) -> list[Problem]:
    """Field names the journey reads that are neither a contact's own (`email`, `id`,
    ...) nor declared: most likely a typing error, which no run would report (a missing
    field reads as empty). Warnings, not problems: free fields need no declaration."""
    known = {*CONTACT_COLUMNS, *READ_ONLY_FIELDS, *await fields.field_types(pool)}
    known |= _fields_written(defn)  # a free field the journey sets itself is no typing error
    read: list[tuple[tuple[str | int, ...], str]] = [
        (loc, leaf.field)
        for loc, cond in condition_places(defn)
        for leaf in condition_parts(cond)
        if isinstance(leaf, FieldIs)
    ]
    if isinstance(defn.entry, FieldChangeEntry):
        read.append((("entry", "field"), defn.entry.field))
    read += [
        ((*prefix, "steps", sid, "until_field"), step.until_field)
        for prefix, sid, step in every_step(defn.steps)
        if isinstance(step, Wait) and step.until_field is not None
    ]
    return [
        (
            loc,
            f"{_where(loc)}field '{name}' is not a declared contact field (POST"
            " /contact-fields); a contact without it reads it as empty",
        )
        for loc, name in read
        if name not in known
    ]


def _fields_written(defn: JourneyDefinition) -> set[str]:
    """The fields the journey's `update_contact` steps and link actions change."""
    updates = [step for _, _, step in every_step(defn.steps) if isinstance(step, UpdateContact)]
    updates += [
        action
        for _, _, step in every_step(defn.steps)
        for actions in (getattr(step, "link_actions", None) or {}).values()
        for action in actions
        if isinstance(action, UpdateContact)
    ]
    return {name for u in updates for name in (u.set or {})} | {
        op.field for u in updates for op in (u.ops or [])
    }


def _where(loc: tuple[str | int, ...]) -> str:
    """`step 'x': ` for a place in a step (the innermost, for a follow-up's step)."""
    steps = [i for i, part in enumerate(loc) if part == "steps"]
    return f"step '{loc[steps[-1] + 1]}': " if steps else f"{loc[0]}: "


def _update_problems(
    at: tuple[str | int, ...], sid: str, step: UpdateContact, types: dict[str, str]
) -> list[Problem]:
    problems: list[Problem] = []
    changes: list[tuple[tuple[str | int, ...], str, str, Any]] = [
        (("set", name), name, "set", value) for name, value in (step.set or {}).items()
    ]
    changes += [(("ops", i), op.field, op.op, op.value) for i, op in enumerate(step.ops or [])]
    for place, name, op, value in changes:
        declared = types.get(name)
        if declared is None:
            continue
        loc = (*at, *place)
        if declared not in OP_FIELD_TYPES[op]:
            problems.append((loc, f"step '{sid}': '{op}' does not fit {declared} field '{name}'"))
        elif op == "set":
            try:
                coerce(declared, value)
            except ValueError as exc:
                problems.append((loc, f"step '{sid}': field '{name}': {exc}"))
    return problems


async def _attachment_problems(
    pool: asyncpg.Pool, at: tuple[str | int, ...], sid: str, ids: list[str]
) -> list[Problem]:
    found = {str(f.id): f for f in await files.get_files(pool, ids)}
    problems: list[Problem] = [
        ((*at, "attachments", i), f"step '{sid}': file {file_id} does not exist")
        for i, file_id in enumerate(ids)
        if file_id not in found
    ]
    total = sum(f.size for f in found.values())
    if total > MAX_ATTACHMENTS_BYTES:
        problems.append(
            (
                (*at, "attachments"),
                f"step '{sid}': attachments total {total / 1024 / 1024:.1f} MB; at most 25 MB",
            )
        )
    return problems
