"""Connecting to Temporal, the same way in every process."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import RetryConfig, TLSConfig

from journeys.codec import EncryptionCodec
from journeys.metrics import sdk_runtime
from journeys.settings import TemporalSettings

# For calls made while an HTTP caller waits: a few quick retries, then 503.
# (The SDK's default keeps retrying an unavailable server for 10 s.)
API_RETRY = RetryConfig(max_elapsed_time_millis=2_000, max_retries=4)
API_RPC_TIMEOUT = timedelta(seconds=5)
# The whole call, connecting included (see `journeys.outages.bounded`).
API_CALL_SECONDS = 6.0


def payload_codec(settings: TemporalSettings) -> EncryptionCodec | None:
    """The encryption codec when JOURNEYS_PAYLOAD_KEYS is set."""
    if settings.payload_keys is None:
        return None
    return EncryptionCodec.from_text(settings.payload_keys.get_secret_value())


def data_converter(settings: TemporalSettings) -> DataConverter:
    """Pydantic payloads, encrypted when JOURNEYS_PAYLOAD_KEYS is set. The client's
    converter is the worker's too (a worker takes its client's)."""
    codec = payload_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """What `Client.connect(tls=...)` gets: False (plain), True (TLS, the server checked
    against the system's roots) or a TLSConfig with the PEM files read now, so that a
    renewed certificate is picked up by the next process start."""
    if not settings.temporal_tls_enabled:
        return False
    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if cert is None and ca is None and settings.temporal_tls_server_name is None:
        return True
    return TLSConfig(
        server_root_ca_cert=ca.read_bytes() if ca else None,
        domain=settings.temporal_tls_server_name,
        client_cert=cert.read_bytes() if cert else None,
        client_private_key=key.read_bytes() if key else None,
    )


def api_key(settings: TemporalSettings) -> str | None:
    """The Temporal Cloud API key (the SDK sends it as `Authorization: Bearer`)."""
    key = settings.temporal_api_key
    return key.get_secret_value() if key is not None else None


async def connect(settings: TemporalSettings, *, lazy: bool = False) -> Client:
    """A client; `lazy` (the API) connects on first use and retries only briefly. Made on
    the process's runtime, whose metrics the process serves (`journeys.metrics`)."""
    return await Client.connect(
        settings.temporal_address,
        runtime=sdk_runtime(),
        namespace=settings.temporal_namespace,
        api_key=api_key(settings),
        tls=tls_config(settings),
        data_converter=data_converter(settings),
        lazy=lazy,
        retry_config=API_RETRY if lazy else None,
    )
