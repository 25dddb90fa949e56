"""`/frequency-caps`: at most so many messages of a channel to a contact within a
period, across journeys (G2). A journey's mail or SMS over the cap waits until the cap
allows it; transactional steps are neither held nor counted (`activities/sends.py`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from api.deps import PoolDep, require_api_key
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.definition.common import IsoDuration, Strict, parse_duration
from journeys.schema import OUT_OF_RANGE
from journeys.store import caps

router = APIRouter(
    tags=["frequency caps"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **OUTAGE_RESPONSE},
)

Channel = Annotated[Literal["email", "sms"], Path(description="the channel the cap counts")]


# A longer period is no frequency, and the database cannot count back much further.
MAX_PERIOD = timedelta(days=366)


class CapIn(Strict):
    max: int = Field(ge=1, le=10_000, description="messages at most", examples=[3])
    per: IsoDuration = Field(
        description="within this period, counted back from now; at most P366D", examples=["P7D"]
    )

    @field_validator("per")
    @classmethod
    def _a_frequency(cls, per: str) -> str:
        if parse_duration(per) > MAX_PERIOD:
            raise PydanticCustomError(
                OUT_OF_RANGE, "a frequency cap's period is at most a year (P366D)"
            )
        return per


class CapOut(CapIn):
    channel: Literal["email", "sms"]


def _out(cap: caps.FrequencyCap) -> CapOut:
    return CapOut.model_validate({"channel": cap.channel, "max": cap.max_messages, "per": cap.per})


@router.get("/frequency-caps", response_model=list[CapOut])
async def list_frequency_caps(pool: PoolDep) -> list[CapOut]:
    """The caps in force (workers apply a change within seconds)."""
    return [_out(cap) for cap in await caps.list_caps(pool)]


@router.put("/frequency-caps/{channel}", response_model=CapOut)
async def set_frequency_cap(channel: Channel, body: CapIn, pool: PoolDep) -> CapOut:
    """Set the channel's cap, e.g. `{"max": 3, "per": "P7D"}`: a journey's message that
    would be the fourth within seven days waits until the oldest of the three is seven
    days old. Messages already sent count; bulk sends (campaigns, recurring sends) count
    but are not held back."""
    cap = caps.FrequencyCap(channel, body.max, body.per)
    await caps.set_cap(pool, cap)
    return _out(cap)


@router.delete(
    "/frequency-caps/{channel}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND_RESPONSE,
)
async def delete_frequency_cap(channel: Channel, pool: PoolDep) -> Response:
    """No cap on the channel any more: held messages go when their wait is over."""
    if not await caps.delete_cap(pool, channel):
        raise not_found(f"no frequency cap on {channel}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
