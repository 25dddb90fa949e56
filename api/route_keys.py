"""Keys a route would shadow: `GET /journeys/schema` answers before `GET /journeys/{key}`
does, so a journey keyed `schema` could be published but never read.

The words are read from the app's own routes, not kept in a list: wherever a path has a
parameter after a collection (`/journeys/{key}`, `/console/journeys/{key}`), every
fixed segment that another route has in that place (`/journeys/schema`) is taken. A
resource's create endpoint refuses such a key with a 422 naming the route.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from journeys.definition import Problem

_ANY = "{}"  # a path parameter, whatever its name


def route_paths(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(methods, path template) of every route, those of included routers too."""
    for route in routes:
        # FastAPI >= 0.16x keeps an included router whole (its routes under a prefix);
        # before, its routes were copied into the app with the prefix in their path.
        included: Any = getattr(route, "original_router", None)
        if included is not None:
            yield from route_paths(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if isinstance(route, Mount):
            yield "ANY", prefix + path
            yield from route_paths(route.routes, prefix + path)
            continue
        methods = sorted(getattr(route, "methods", None) or ["ANY"])
        yield ", ".join(m for m in methods if m != "HEAD") or "ANY", prefix + path


def _segments(path: str) -> tuple[str, ...]:
    return tuple(_ANY if s.startswith("{") else s for s in path.strip("/").split("/") if s)


def shadowed_slots(paths: Iterable[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """Per key slot (`/journeys/{}`), the fixed words other routes have in its place, each
    with a route that has it (`schema`: `GET /journeys/schema`)."""
    routes = [(methods, path, _segments(path)) for methods, path in paths]
    slots = {
        segments[: i + 1]
        for _, _, segments in routes
        for i, segment in enumerate(segments)
        if segment == _ANY and i > 0 and segments[i - 1] != _ANY
    }
    found: dict[str, dict[str, str]] = {}
    for slot in sorted(slots):
        where = slot[:-1]
        words = {
            segments[len(where)]: f"{methods} {path}"
            for methods, path, segments in routes
            if len(segments) > len(where)
            and segments[: len(where)] == where
            and segments[len(where)] != _ANY
        }
        if words:
            found["/" + "/".join(slot)] = dict(sorted(words.items()))
    return found


def taken_keys(app: Starlette, collection: str) -> dict[str, str]:
    """The keys of `collection` (a path segment such as `journeys`) that a route of the
    app answers for instead, each with that route."""
    taken: dict[str, str] = {}
    for slot, words in shadowed_slots(route_paths(app.routes)).items():
        if slot.split("/")[-2] == collection:
            taken.update(words)
    return taken


def key_problems(app: Starlette, collection: str, key: str, what: str) -> list[Problem]:
    """Why `key` cannot name a `what` (one problem at `key`), or nothing."""
    route = taken_keys(app, collection).get(key)
    if route is None:
        return []
    return [
        (
            ("key",),
            f"'{key}' cannot be a {what}'s key: the route {route} answers at that path, "
            f"so the {what} could not be read there; choose another key",
        )
    ]
