"""The contact's journal: what the product did besides messages and records
(selection and project changes, journey entries, exits, refusals, profile
updates). The dossier reads it."""

from __future__ import annotations

import uuid

from journeys.db import Executor


async def write_journal(
    conn: Executor,
    contact_id: uuid.UUID,
    kind: str,
    title: str,
    journey_key: str | None = None,
    step: str | None = None,
    idempotency_key: str | None = None,
) -> None:
    """One line; a second one under the same idempotency key is dropped."""
    await conn.execute(
        """INSERT INTO contact_journal (contact_id, kind, title, journey_key, step,
                                        idempotency_key)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING""",
        contact_id,
        kind,
        title,
        journey_key,
        step,
        idempotency_key,
    )
