"""Connecting to Temporal, the same way in every process."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

from journeys.settings import Settings

# For calls made while an HTTP caller waits: a few quick retries, then 503.
# (The SDK's default keeps retrying an unavailable server for 10 s.)
API_RETRY = RetryConfig(max_elapsed_time_millis=2_000, max_retries=4)
API_RPC_TIMEOUT = timedelta(seconds=5)
# The whole call, connecting included (see `journeys.outages.bounded`).
API_CALL_SECONDS = 6.0


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """A client; `lazy` (the API) connects on first use and retries only briefly."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        lazy=lazy,
        retry_config=API_RETRY if lazy else None,
    )
