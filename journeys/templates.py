"""Message templates: jinja2 in a sandbox, because marketers write them.

Contact variables are available as `contact.<field>`; a field the contact does
not have renders as nothing. A send about a record (a selection of records) also has
`record.<field>`, `record.id`, `record.external_id` and `record.type`. Values are
HTML-escaped in HTML parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from journeys.definition import JourneyDefinition, Problem
from journeys.definition.graph import every_step


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


_PLAIN = SandboxedEnvironment(autoescape=False, undefined=Undefined, finalize=_blank_none)
_HTML = SandboxedEnvironment(autoescape=True, undefined=Undefined, finalize=_blank_none)


class RenderError(ValueError):
    """A template failed to compile or render; the message says where."""


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    # A journey's templates are rendered for every participant; compile each once.
    return (_HTML if html else _PLAIN).from_string(source)


def record_variables(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """What `record.` offers: the record's fields, then its id, external id and type.
    `record` is a record as stored (`journeys.store.records.Record`, dumped, or a row
    with `fields`) or already flat; none (a send about no record) offers nothing."""
    if record is None:
        return {}
    found = dict(record)
    fields = found.pop("fields", None)
    # A record type cannot declare `id`, `type`, ... (`RESERVED_RECORD_FIELDS`): none
    # of its fields hides them.
    return {**fields, **found} if isinstance(fields, Mapping) else found


def render(
    template: str,
    contact: Mapping[str, Any],
    *,
    html: bool = False,
    record: Mapping[str, Any] | None = None,
) -> str:
    try:
        return _compiled(template, html).render(
            contact=dict(contact), record=record_variables(record)
        )
    except Exception as exc:
        # Anything a template raises (SecurityError, a sandbox limit, 1/0, a bad
        # filter argument) is the template's fault: retrying cannot help.
        raise RenderError(f"{type(exc).__name__}: {exc}") from None


def template_problems(defn: JourneyDefinition) -> list[Problem]:
    """Templates that do not compile, as (location, message)."""
    problems: list[Problem] = []
    for prefix, sid, step in every_step(defn.steps):
        for part, html in step.templates.items():
            source = getattr(step, part)
            if source is None:
                continue
            try:
                (_HTML if html else _PLAIN).parse(source)
            except TemplateError as exc:
                problems.append(
                    ((*prefix, "steps", sid, part), f"step '{sid}': {part} template: {exc}")
                )
    return problems
