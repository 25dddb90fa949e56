"""schemathesis hooks for the fault suite's run over the served OpenAPI document
(`SCHEMATHESIS_HOOKS`, set by `tests/faults/test_faults.py`).

`positive_data_acceptance` says that a request valid by the document gets no 4xx but
401, 403, 404, 409 and 429. The document states every rule the API enforces that JSON
Schema can state; the rest it cannot: whether a contact, user or selection a body names
exists, what a stored declaration allows, a journey's graph and templates, cursors the
API gave, Temporal's visibility queries. A 422 for one of those is right, and the API
says so in each problem's `type` (`api.errors.BEYOND_SCHEMA`): such a 422 is dropped
here, and only such a one. A 422 with any other problem type, or any other 4xx, still
fails the run. (A 404 or 409 for what does not exist or conflicts passes the check as it
is: both are among its expected statuses.)

`/ops/replay` and `/ops/reset` act on every run that matches: here each call is held to
a journey key that names none (and a reset to a dry run), so the fuzzing neither waits
for the replay of the suite's thousands of runs nor resets one. What they answer for a
selection is checked in tests/test_ops.py and tests/test_ops_mending.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from schemathesis import Case, Response
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData

from api.errors import BEYOND_SCHEMA

# The entry `bounded` adds after the first 100 problems: it counts the others, which
# are of the listed kinds.
_COUNT = "too_many_problems"
NO_SUCH_JOURNEY = "schemathesis-matches-no-run"
DROPPED_ENV = "JOURNEYS_SCHEMATHESIS_DROPPED"  # as test_faults.py names it


def beyond_schema(response: Response) -> bool:
    """Whether `response` is a 422 all of whose problems break rules JSON Schema cannot
    state."""
    if response.status_code != 422:
        return False
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return False
    if not isinstance(detail, list) or not detail:
        return False
    kinds = {entry.get("type") for entry in detail if isinstance(entry, dict)}
    return len(kinds) > 0 and kinds - {_COUNT} <= set(BEYOND_SCHEMA)


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext, failure: Failure, case: Case[Any], response: Response
) -> bool:
    """Keep every failure but a valid request's 422 for rules beyond the schema; each
    one dropped is counted in the file DROPPED_ENV names, by operation and problem type."""
    if not (isinstance(failure, RejectedPositiveData) and beyond_schema(response)):
        return True
    if where := os.environ.get(DROPPED_ENV):
        kinds = sorted({entry["type"] for entry in response.json()["detail"]})
        with open(where, "a", encoding="utf-8") as out:
            out.write(json.dumps({"operation": case.operation.label, "types": kinds}) + "\n")
    return False


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    """Hold replays and resets to no run at all (see the module's docstring)."""
    if case.method.upper() != "POST" or case.path not in ("/ops/replay", "/ops/reset"):
        return
    if isinstance(case.body, dict):
        case.body = {**case.body, "journey": NO_SUCH_JOURNEY}
        if case.path == "/ops/reset":
            case.body["dry_run"] = True
