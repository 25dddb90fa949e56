"""Session fixtures: the real stack, started once for the whole test run.

- `stack`: embedded PostgreSQL, the Temporal dev server (file database, WAL),
  the aiosmtpd sink, a worker and the API served by uvicorn over real HTTP.
- `time_env`: Temporal's time-skipping test server for long waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from journeys.db import create_pool
from journeys.devstack import TemporalDevServer, find_binary, free_port, start_postgres
from journeys.mailsink import MailSink, list_mail
from journeys.migrate import migrate
from journeys.models import SEARCH_ATTRIBUTE_TYPES
from journeys.settings import ApiSettings
from journeys.smssink import list_sms, sink_url
from journeys.temporal import connect
from worker import running_worker

API_KEY = "test-api-key"
SECRET = "test-secret"
WEBHOOK_SECRET = "test-webhook-secret"


@dataclass
class Stack:
    settings: ApiSettings
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    temporal: Client
    mail_dir: Path
    base_url: str

    def sms_to(self, number: str) -> list[dict[str, Any]]:
        folder = self.settings.dev_sms_dir
        return [m for m in list_sms(folder) if m["to"] == number] if folder else []

    def mail_to(self, address: str) -> list[dict[str, Any]]:
        return list_mail(self.mail_dir, to=address)

    async def wait_for_mail(
        self, address: str, count: int, timeout: float = 20
    ) -> list[dict[str, Any]]:
        """The sink's messages to `address` once there are `count` of them."""
        for _ in range(int(timeout * 10)):
            if len(mail := self.mail_to(address)) >= count:
                return mail
            await asyncio.sleep(0.1)
        raise AssertionError(f"expected {count} messages to {address}, got {len(mail)}")


@pytest.fixture(scope="session")
async def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    server = start_postgres(tmp_path_factory.mktemp("pg") / "data")
    url = str(server.get_uri())
    await asyncio.to_thread(migrate, url)
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
async def stack(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("stack")
    temporal = TemporalDevServer(
        home / "temporal.db", port=free_port(), ui_port=None, log_file=home / "temporal.log"
    )
    await temporal.start()
    api_port = free_port()
    async with MailSink(home / "mail", port=0) as sink:
        settings = ApiSettings(
            database_url=postgres_url,
            temporal_address=temporal.address,
            smtp_url=f"smtp://127.0.0.1:{sink.port}",
            api_key=API_KEY,
            secret=SECRET,
            webhook_secret=WEBHOOK_SECRET,
            public_url=f"http://127.0.0.1:{api_port}",
            dev_mail_dir=home / "mail",
            sms_url=sink_url(f"http://127.0.0.1:{api_port}"),
            dev_sms_dir=home / "sms",
        )
        client = await connect(settings)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=api_port, log_level="warning"
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        pool = await create_pool(postgres_url)
        async with (
            running_worker(settings, client),
            httpx.AsyncClient(
                base_url=settings.public_url, headers={"Authorization": f"Bearer {API_KEY}"}
            ) as http,
        ):
            yield Stack(settings, http, pool, client, home / "mail", settings.public_url)
        await pool.close()
        server.should_exit = True
        await serving
    temporal.stop()


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    path = find_binary("temporal-test-server")  # from the dev extra
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=path
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


async def register_search_attributes(client: Client) -> None:
    """The time-skipping server knows no custom search attributes until told."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST
                if kind == "KeywordList"
                else IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
            },
        )
    )
