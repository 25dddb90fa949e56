"""`journeys keys create NAME --scope S… | list | revoke NAME`: API keys, through the API.

Through the API rather than straight into PostgreSQL: under `journeys dev` the database
is the embedded server on a socket in the data folder and DATABASE_URL is usually
unset, while the API's address and an admin key (the dev key in `.journeys/api-key`,
or JOURNEYS_API_KEY) are what every other command already finds. In a deployment it
also means whoever manages keys needs an admin key, not the database's password, and
the API checks the name and scopes the same way for both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

from journeys.cli_enrol import CommandError, _detail
from journeys.store.api_keys import scope_problem


async def _call(http: httpx.AsyncClient, method: str, path: str, ok: int, **kw: Any) -> Any:
    response = await http.request(method, path, **kw)
    if response.status_code != ok:
        raise CommandError(f"the API answered {response.status_code}: {_detail(response)}")
    return response.json()


def _when(value: str | None, form: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromisoformat(value).strftime(form) if value else "-"


async def create_key(
    http: httpx.AsyncClient, name: str, scopes: list[str], console: Console
) -> dict[str, Any]:
    if not scopes:
        raise CommandError("give the key at least one --scope: read, write or admin")
    for scope in scopes:
        if problem := scope_problem(scope):
            raise CommandError(problem)
    made: dict[str, Any] = await _call(
        http, "POST", "/api-keys", 201, json={"name": name, "scopes": scopes}
    )
    console.print(f"API key [bold]{made['name']}[/] ({', '.join(made['scopes'])}):")
    # Bare on a line of its own, so that a copy takes just the key.
    console.print(made["key"], soft_wrap=True, highlight=False)
    console.print("Keep it now: it is not shown again (only its digest is stored).")
    return made


async def list_keys(http: httpx.AsyncClient, console: Console) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = await _call(http, "GET", "/api-keys", 200)
    table = Table(
        title="API keys (times in UTC)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="JOURNEYS_API_KEY is not stored, so not listed; it has every scope",
    )
    # Fits 80 columns: wrapped rather than cut short, a name only when longer than 14, a
    # time between its date and its hour.
    names = min(max((len(k["name"]) for k in keys), default=4), 14)
    for column, narrowest in (
        ("name", names),
        ("key", 12),
        ("scopes", 5),
        ("created", 10),
        ("last used", 10),
        ("revoked", 10),
    ):
        table.add_column(column, no_wrap=column == "key", overflow="fold", min_width=narrowest)
    for k in keys:
        table.add_row(
            k["name"],
            f"{k['prefix']}…",
            ", ".join(k["scopes"]),
            _when(k["created_at"], "%Y-%m-%d"),
            _when(k["last_used_at"]),
            _when(k["revoked_at"]),
        )
    console.print(table)
    return keys


async def revoke_key(http: httpx.AsyncClient, name: str, console: Console) -> dict[str, Any]:
    revoked: dict[str, Any] = await _call(http, "DELETE", f"/api-keys/{quote(name, safe='')}", 200)
    console.print(f"API key [bold]{revoked['name']}[/] ({revoked['prefix']}…): revoked")
    return revoked
