"""Message templates: jinja2 in a sandbox, because marketers write them.

Contact variables are available as `contact.<field>`; a field the contact does
not have renders as nothing. Values are HTML-escaped in HTML parts.
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


def render(template: str, contact: Mapping[str, Any], *, html: bool = False) -> str:
    try:
        return _compiled(template, html).render(contact=dict(contact))
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
