"""Message templates: jinja2 in a sandbox, because marketers write them.

Contact variables are available as `contact.<field>`; a field the contact does
not have renders as nothing. A send about a record (a selection of records) also has
`record.<field>`, `record.id`, `record.external_id` and `record.type`. Values are
HTML-escaped in HTML parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError, Undefined, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from markupsafe import escape

from journeys.definition import JourneyDefinition, Problem
from journeys.definition.graph import every_step


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


_PLAIN = SandboxedEnvironment(autoescape=False, undefined=Undefined, finalize=_blank_none)
_HTML = SandboxedEnvironment(autoescape=True, undefined=Undefined, finalize=_blank_none)

# Output markers of a skeleton: the i-th value a template writes is VALUE_MARK + i.
# Private-use characters, which nobody writes in a mail (a template that does gets no
# skeleton).
VALUE_MARK = 0xE000
MAX_VALUES = 0x1000
_MARKS = re.compile("([\ue000-\uefff])")
_probe_values: ContextVar[list[Any]] = ContextVar("probe_values")


@pass_context  # never applied at compile time (to constants): a marker is per render
def _mark(context: Any, value: Any) -> str:
    values = _probe_values.get()
    values.append(_blank_none(value))
    return chr(VALUE_MARK + len(values) - 1) if len(values) <= MAX_VALUES else ""


# Immutable: a template that changes a list or dict of its variables (`append`) does so in
# the real rendering only, not a second time here (the probe then fails: no skeleton).
_HTML_PROBE = ImmutableSandboxedEnvironment(autoescape=True, undefined=Undefined, finalize=_mark)


@dataclass(frozen=True)
class Skeleton:
    """An HTML rendering with each value the template wrote replaced by its marker.

    The rendering is exactly `html` with marker i replaced by `escaped[i]`, and no
    value is markup: so every tag, comment and attribute boundary of the rendering is
    one of `html`, and work that depends on the markup alone (finding the links to
    track) can be done once per skeleton instead of once per mail.
    """

    html: str
    values: tuple[str, ...]  # as a reader sees them
    escaped: tuple[str, ...]  # as they are in the HTML


class RenderError(ValueError):
    """A template failed to compile or render; the message says where."""


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    # A journey's templates are rendered for every participant; compile each once.
    return (_HTML if html else _PLAIN).from_string(source)


@lru_cache(maxsize=1024)
def _compiled_probe(source: str) -> Template:
    return _HTML_PROBE.from_string(source)


def render_html(
    template: str, contact: Mapping[str, Any], *, record: Mapping[str, Any] | None = None
) -> tuple[str, Skeleton | None]:
    """`render(..., html=True)`, and the rendering's skeleton when it has one.

    The template is rendered a second time with markers for values (cheap next to
    parsing the HTML it makes), and the skeleton is kept only when filling in the
    values gives back the rendering itself: not when a value is markup (`|safe`, a
    macro's output) or a block filter changed what its values wrote.
    """
    html = render(template, contact, html=True, record=record)
    values: list[Any] = []
    token = _probe_values.set(values)
    try:
        skeleton = _compiled_probe(template).render(
            contact=dict(contact), record=record_variables(record)
        )
    except Exception:  # the real rendering succeeded; a skeleton is only a shortcut
        return html, None
    finally:
        _probe_values.reset(token)
    if len(values) > MAX_VALUES or any(hasattr(v, "__html__") for v in values):
        return html, None
    pieces = _MARKS.split(skeleton)
    if pieces[1::2] != [chr(VALUE_MARK + i) for i in range(len(values))]:
        return html, None  # the template writes private-use characters of its own
    shown = tuple(str(v) for v in values)
    escaped = tuple(str(escape(v)) for v in shown)
    filled = pieces[:]
    filled[1::2] = escaped
    if "".join(filled) != html:
        return html, None
    return html, Skeleton(skeleton, shown, escaped)


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
