"""A step kind is whole or absent: its model, its handler and the activities the
worker registers cover each other, so a half-added kind fails here at once."""

from __future__ import annotations

import inspect
from typing import Any, get_args

from activities.bulk import BulkActivities
from activities.contacts import ContactActivities
from activities.crm import CrmActivities
from activities.email import EmailActivities
from activities.groups import GroupActivities
from activities.recurring import RecurringActivities
from activities.scripts import ScriptActivities
from activities.sms import SmsActivities
from activities.timing import TimingActivities
from journeys.definition import Step
from journeys.settings import Settings
from worker import Outbound, bound_activities
from workflows.steps import HANDLERS

SETTINGS = Settings(secret="catalogue")
OUTBOUND = Outbound(smtp=None, http=None, sms=None)  # type: ignore[arg-type]
ACTIVITY_CLASSES = (
    EmailActivities,
    ContactActivities,
    TimingActivities,
    GroupActivities,
    CrmActivities,
    ScriptActivities,
    SmsActivities,
    BulkActivities,
    RecurringActivities,
)


def _activity_name(fn: Any) -> str | None:
    definition = getattr(fn, "__temporal_activity_definition", None)
    return None if definition is None else str(definition.name)


def test_every_step_model_has_a_handler_and_every_handler_a_model() -> None:
    (union, _discriminator) = get_args(Step)
    models = set(get_args(union))
    assert models == set(HANDLERS), models ^ set(HANDLERS)
    kinds = [get_args(m.model_fields["type"].annotation) for m in models]
    assert len(set(kinds)) == len(kinds), kinds


def test_the_worker_registers_every_activity_and_nothing_else() -> None:
    defined = {
        name
        for cls in ACTIVITY_CLASSES
        for _, fn in inspect.getmembers(cls, inspect.isfunction)
        if (name := _activity_name(fn)) is not None
    }
    registered = [_activity_name(fn) for fn in bound_activities(SETTINGS, None, OUTBOUND, None)]  # type: ignore[arg-type]
    assert None not in registered
    assert sorted(defined) == sorted(registered)  # type: ignore[type-var]


def test_every_activity_a_handler_calls_is_registered() -> None:
    modules = {inspect.getmodule(handler) for handler in HANDLERS.values()}
    source = "".join(inspect.getsource(m) for m in modules)  # type: ignore[arg-type]
    registered = {_activity_name(fn) for fn in bound_activities(SETTINGS, None, OUTBOUND, None)}  # type: ignore[arg-type]
    for cls in ACTIVITY_CLASSES:
        for attr, fn in inspect.getmembers(cls, inspect.isfunction):
            if f"{cls.__name__}.{attr}" in source:
                assert _activity_name(fn) in registered, f"{cls.__name__}.{attr}"
