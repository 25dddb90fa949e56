"""Steps that create records for colleagues (activities, requests, sales) or call
another system (run_script)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AnyHttpUrl, ConfigDict, Field, model_validator

from journeys.definition.common import (
    IsoDuration,
    Key,
    Problem,
    StepBase,
    StepId,
    Strict,
    step_problem,
)
from journeys.schema import not_all_of


class UserOwner(Strict):
    """A named colleague (a user key)."""

    kind: Literal["user"]
    user: Key


class ContactOwner(Strict):
    """The contact's `owner`."""

    kind: Literal["contact_owner"]


class ServiceOwner(Strict):
    """The contact's `service_owner`."""

    kind: Literal["service_owner"]


class AutoOwner(Strict):
    """Chosen by the category's assignment rule (round robin among its members)."""

    kind: Literal["auto"]


class Unassigned(Strict):
    kind: Literal["unassigned"]


PersonOwner = Annotated[UserOwner | ContactOwner | ServiceOwner, Field(discriminator="kind")]
RequestOwner = Annotated[UserOwner | AutoOwner | Unassigned, Field(discriminator="kind")]


class FreeSlot(Strict):
    duration: IsoDuration = Field(description="how long the activity takes, e.g. PT30M")


class CreateActivity(StepBase):
    """A call, meeting or to-do for a colleague, due after `due_in` or booked in the
    owner's first free slot in working hours."""

    model_config = ConfigDict(json_schema_extra=not_all_of("due_in", "first_free_slot"))
    templates: ClassVar[dict[str, bool]] = {"title": False}

    type: Literal["create_activity"]
    title: str = Field(min_length=1, max_length=500)
    activity_type: Literal["call", "meeting", "todo"]
    due_in: IsoDuration | None = None
    first_free_slot: FreeSlot | None = None
    owner: PersonOwner = Field(default_factory=lambda: ContactOwner(kind="contact_owner"))
    next: StepId

    @model_validator(mode="after")
    def _one_moment(self) -> CreateActivity:
        if self.due_in is not None and self.first_free_slot is not None:
            raise ValueError("give due_in or first_free_slot, not both")
        return self


class CreateRequest(StepBase):
    """A service request (ticket) for the contact."""

    templates: ClassVar[dict[str, bool]] = {"title": False, "message": False}

    type: Literal["create_request"]
    title: str = Field(min_length=1, max_length=500)
    request_type: str | None = Field(default=None, max_length=100)
    status: str = Field(default="open", min_length=1, max_length=50)
    category: str | None = Field(default=None, max_length=100)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    message: str | None = Field(default=None, max_length=20_000)
    owner: RequestOwner = Field(default_factory=lambda: Unassigned(kind="unassigned"))
    next: StepId

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        if isinstance(self.owner, AutoOwner) and self.category is None:
            return [step_problem(sid, ("owner",), "automatic assignment needs a category")]
        return []


class CreateSale(StepBase):
    """A sales opportunity for the contact."""

    templates: ClassVar[dict[str, bool]] = {"title": False}

    type: Literal["create_sale"]
    title: str = Field(min_length=1, max_length=500)
    sale_type: str | None = Field(default=None, max_length=100)
    stage: str = Field(default="lead", min_length=1, max_length=50)
    amount: float = Field(ge=0, le=1e12)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    owner: PersonOwner = Field(default_factory=lambda: ContactOwner(kind="contact_owner"))
    next: StepId


class RunScript(StepBase):
    """POST the contact and journey context to a URL (HMAC-signed) and move on at once;
    the call is retried in the background and its outcome shown in the dossier."""

    type: Literal["run_script"]
    url: AnyHttpUrl
    next: StepId


CrmStep = CreateActivity | CreateRequest | CreateSale | RunScript
