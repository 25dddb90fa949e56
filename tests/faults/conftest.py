"""One fault stack for the whole fault suite: every scenario breaks and heals a part of
it, and the next one starts from the healed stack (starting it costs about 15 s)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.faults import FaultStack, fault_n, fault_stack


@pytest.fixture(scope="session")
async def faults(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    async with fault_stack(tmp_path_factory.mktemp("faults"), fault_n()) as fs:
        yield fs
