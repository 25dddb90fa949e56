"""API keys with scopes on the real stack: what each scope may do (403 naming the scope it
lacks), revocation (401), what the table keeps (a digest, never the key), the refusals
of bad input, the public endpoints staying public, and `journeys keys`."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, Stack
from tests.helpers import create_contact, run_cli


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def make_key(stack: Stack, name: str, *scopes: str) -> dict[str, Any]:
    made = await stack.http.post("/api-keys", json={"name": name, "scopes": list(scopes)})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    assert re.fullmatch(r"jk_[A-Za-z0-9_-]{43}", body["key"]), body
    return body


def client(stack: Stack, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def field_body() -> dict[str, str]:
    return {"name": f"f_{uuid.uuid4().hex[:8]}", "type": "text"}


async def test_each_scope_allows_what_it_says(stack: Stack) -> None:
    read = await make_key(stack, unique("reader"), "read")
    write = await make_key(stack, unique("writer"), "write")
    admin = await make_key(stack, unique("admin"), "admin")
    assert (read["scopes"], write["scopes"], admin["scopes"]) == (["read"], ["write"], ["admin"])

    async with client(stack, read["key"]) as reader:
        assert (await reader.get("/contact-fields")).status_code == 200
        refused = await reader.post("/contact-fields", json=field_body())
        assert refused.status_code == 403, refused.text
        assert "'write'" in refused.json()["detail"] and read["name"] in refused.json()["detail"]
        assert (await reader.delete("/api-keys/anything")).status_code == 403
        keys = await reader.get("/api-keys")
        assert keys.status_code == 403 and "'admin'" in keys.json()["detail"], keys.text

    async with client(stack, write["key"]) as writer:
        contact = await create_contact(writer)  # write: POST
        assert (await writer.get(f"/contacts/{contact}")).status_code == 200  # includes read
        refused = await writer.post("/api-keys", json={"name": unique("x"), "scopes": ["read"]})
        assert refused.status_code == 403 and "'admin'" in refused.json()["detail"]

    async with client(stack, admin["key"]) as administrator:
        assert (await administrator.post("/contact-fields", json=field_body())).status_code == 201
        listed = await administrator.get("/api-keys")
        assert listed.status_code == 200
        assert {read["name"], write["name"], admin["name"]} <= {k["name"] for k in listed.json()}
        another = await administrator.post(
            "/api-keys", json={"name": unique("by-admin"), "scopes": ["read"]}
        )
        assert another.status_code == 201, another.text

    # A key used has a last use; one never used has none.
    unused = await make_key(stack, unique("unused"), "read")
    views = {k["name"]: k for k in (await stack.http.get("/api-keys")).json()}
    assert views[read["name"]]["last_used_at"] is not None
    assert views[unused["name"]]["last_used_at"] is None


async def test_a_revoked_key_gets_401_and_its_name_may_be_given_again(stack: Stack) -> None:
    name = unique("rotate")
    first = await make_key(stack, name, "read", "write")
    async with client(stack, first["key"]) as old:
        assert (await old.get("/contact-fields")).status_code == 200
        again = await stack.http.post("/api-keys", json={"name": name, "scopes": ["read"]})
        assert again.status_code == 409 and name in again.json()["detail"], again.text

        revoked = await stack.http.delete(f"/api-keys/{name}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None and "key" not in revoked.json()
        refused = await old.get("/contact-fields")
        assert refused.status_code == 401, refused.text
        assert "revoked" in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"

        gone = await stack.http.delete(f"/api-keys/{name}")
        assert gone.status_code == 404 and name in gone.json()["detail"]

        second = await make_key(stack, name, "read")
        assert second["key"] != first["key"]
        async with client(stack, second["key"]) as new:
            assert (await new.get("/contact-fields")).status_code == 200
        assert (await old.get("/contact-fields")).status_code == 401

    listed = [k for k in (await stack.http.get("/api-keys")).json() if k["name"] == name]
    assert [k["revoked_at"] is None for k in listed] == [True, False]  # in use first


async def test_the_table_keeps_a_digest_never_the_key(stack: Stack) -> None:
    made = await make_key(stack, unique("stored"), "read")
    token = made["key"]
    row = await stack.pool.fetchrow("SELECT * FROM api_keys WHERE name = $1", made["name"])
    assert row is not None
    assert bytes(row["hash"]) != token.encode()
    assert bytes(row["hash"]) == hashlib.sha256(token.encode()).digest()
    assert row["prefix"] == made["prefix"] == token[:11] and token.startswith(row["prefix"])
    # Nowhere in the table, in any column of any row, nor in the listing.
    table = await stack.pool.fetch("SELECT k::text AS t FROM api_keys k")
    assert table and not any(token in r["t"] or token[11:] in r["t"] for r in table)
    listing = (await stack.http.get("/api-keys")).text
    assert token[11:] not in listing and "hash" not in listing


async def test_bad_input_is_refused_naming_it(stack: Stack) -> None:
    async def refused(body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await stack.http.post("/api-keys", json=body)
        assert answer.status_code == 422, answer.text
        detail: list[dict[str, Any]] = answer.json()["detail"]
        return detail

    bad = unique("bad")
    (error,) = await refused({"name": bad, "scopes": ["read", "superuser"]})
    assert error["loc"] == ["body", "scopes", 1]
    assert "'superuser'" in error["msg"] and "read, write and admin" in error["msg"], error
    (error,) = await refused({"name": unique("none"), "scopes": []})
    assert error["loc"] == ["body", "scopes"]
    (error,) = await refused({"name": "Not A Name", "scopes": ["read"]})
    assert error["loc"] == ["body", "name"]
    assert (await stack.http.delete("/api-keys/Not%20A%20Name")).status_code == 422
    # Repeated scopes are kept once, in order.
    made = await make_key(stack, unique("twice"), "write", "read", "write")
    assert made["scopes"] == ["read", "write"]
    assert await stack.pool.fetchval("SELECT count(*) FROM api_keys WHERE name = $1", bad) == 0


async def test_unknown_tokens_and_public_endpoints(stack: Stack) -> None:
    lookalike = "jk_" + "A" * 43  # shaped like a key, made by nobody
    async with client(stack, lookalike) as stranger:
        answer = await stranger.get("/contact-fields")
        assert answer.status_code == 401 and answer.json()["detail"] == "invalid API key"
    async with httpx.AsyncClient(base_url=stack.base_url) as stranger:
        not_ascii = {b"Authorization": "Bearer jk_é".encode()}
        assert (await stranger.get("/contact-fields", headers=not_ascii)).status_code == 401
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/t/o/forged")).status_code == 404  # not 401
        assert (await anonymous.get("/api-keys")).status_code == 401


async def test_openapi_documents_the_auth_answers(stack: Stack) -> None:
    paths = (await stack.http.get("/openapi.json")).json()["paths"]
    assert {"201", "401", "403", "409", "422", "503"} <= paths["/api-keys"]["post"][
        "responses"
    ].keys()
    assert {"401", "403", "503"} <= paths["/api-keys"]["get"]["responses"].keys()
    assert {"401", "403", "404", "422"} <= paths["/api-keys/{name}"]["delete"]["responses"].keys()
    assert {"401", "403"} <= paths["/contacts"]["post"]["responses"].keys()
    assert "403" not in paths["/t/c/{token}"]["get"]["responses"]


async def test_the_cli_creates_lists_and_revokes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("cli")
    monkeypatch.setenv("COLUMNS", "200")  # rich's width: each key's row on one line

    async def journeys(*args: str, key: str = API_KEY) -> tuple[int, str, str]:
        return await run_cli(stack.base_url, key, "keys", *args)

    code, out, err = await journeys("create", name, "--scope", "read", "--scope", "write")
    assert code == 0, err
    found = re.search(r"^(jk_[A-Za-z0-9_-]{43})$", out, re.MULTILINE)
    assert found, out
    token = found.group(1)
    async with client(stack, token) as made:
        assert (await made.post("/contact-fields", json=field_body())).status_code == 201

    code, out, err = await journeys("list")
    assert code == 0, err
    row = re.search(rf"^.*{name}\s.*$", out, re.MULTILINE)
    assert row and re.search(rf"{re.escape(token[:11])}…\s+read, write\s+20", row[0]), out
    assert row[0].rstrip().endswith("-"), row[0]  # not revoked
    assert token[11:] not in out

    code, out, err = await journeys("list", key=token)  # a write key is no admin
    assert code == 1 and "403" in err and "'admin'" in err, err

    code, out, err = await journeys("revoke", name)
    assert code == 0 and "revoked" in out, err
    async with client(stack, token) as made:
        assert (await made.get("/contact-fields")).status_code == 401

    code, _, err = await journeys("create", unique("bad"), "--scope", "read", "--scope", "root")
    assert code == 1 and "unknown scope 'root'" in err, err
    code, _, err = await journeys("create", unique("bare"))
    assert code == 1 and "--scope" in err, err
    code, _, err = await journeys("revoke", "no-such-key")
    assert code == 1 and "no API key named 'no-such-key' is in use" in err, err
