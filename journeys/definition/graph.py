"""Checks over the whole graph that pydantic cannot express per field.

Dangling edges, unreachable steps, loops without a wait and each step's own
references; every problem comes with the location of the offending step so the
API can report them all at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from journeys.definition.common import Problem, step_problem
from journeys.definition.conditions import (
    MessageWas,
    condition_parts,
    message_kinds_for,
    record_field_problems,
)
from journeys.definition.followups import FollowUp
from journeys.definition.journey import JourneyDefinition
from journeys.definition.limits import size_problems
from journeys.definition.steps.profile import action_signatures, describe_signature


def every_step(
    steps: dict[str, Any], prefix: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    """(location of its `steps` mapping, id, step) of every step, those of follow-ups
    (and of their follow-ups) included; a journey's own steps have the prefix ()."""
    for sid, step in steps.items():
        yield prefix, sid, step
        for i, rule in enumerate(getattr(step, "follow_ups", None) or []):
            yield from every_step(rule.steps, (*prefix, "steps", sid, "follow_ups", i))


def successors(step: Any) -> list[str]:
    """The step ids a step can go to next."""
    return [edge.target for edge in step.edges()]


def definition_problems(defn: JourneyDefinition) -> list[Problem]:
    """Every graph-level problem of a definition as (location, message), its
    follow-ups' steps included."""
    problems: list[Problem] = []
    if defn.exit_if is not None:
        problems.extend(
            (
                ("exit_if",),
                f"exit_if: message '{leaf.message}' is not a "
                + " or ".join(message_kinds_for(leaf))
                + " step",
            )
            for leaf in condition_parts(defn.exit_if)
            if isinstance(leaf, MessageWas)
            and getattr(defn.steps.get(leaf.message), "type", None) not in message_kinds_for(leaf)
        )
    problems += record_field_problems(defn.exit_if, ("exit_if",), "exit_if: ")
    # Checked on the raw body by the API already; held here for every other way in.
    problems += size_problems(defn.model_dump(mode="json", by_alias=True, exclude_none=True))
    for name in ("schedule_if", "run_if"):
        problems += record_field_problems(
            getattr(defn.entry, name, None), ("entry", name), f"entry {name}: "
        )
    return graph_problems(defn.start, defn.steps) + problems


def graph_problems(start: str, steps: dict[str, Any]) -> list[Problem]:
    """The problems of one graph of steps (a journey's, or a follow-up's)."""
    problems: list[Problem] = []
    if start not in steps:
        problems.append((("start",), f"start step '{start}' is not a step of this journey"))
    for sid, step in steps.items():
        for edge in step.edges():
            if edge.target not in steps:
                problems.append(
                    step_problem(
                        sid, edge.loc, f"{edge.label} '{edge.target}' is not a step of this journey"
                    )
                )
        problems.extend(step.problems(sid, steps))
        for i, rule in enumerate(getattr(step, "follow_ups", None) or []):
            problems += _follow_up_problems(sid, i, rule)
    if problems:
        return problems
    reachable = _reachable(start, steps)
    for sid in steps:
        if sid not in reachable:
            problems.append(
                (("steps", sid), f"step '{sid}' cannot be reached from start '{start}'")
            )
    cycle = _loop_without_wait(steps)
    if cycle:
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(
            (("steps", cycle[0]), f"step '{cycle[0]}' is on a loop without a wait: {path}")
        )
    return problems


def _follow_up_problems(sid: str, index: int, rule: FollowUp) -> list[Problem]:
    """A follow-up's own graph, located inside its message step."""
    inner: list[Problem] = []
    for name in ("schedule_if", "run_if"):
        cond = getattr(rule, name)
        if cond is not None and any(isinstance(leaf, MessageWas) for leaf in condition_parts(cond)):
            inner.append(((name,), f"{name} is about the contact; it cannot ask about messages"))
        inner += record_field_problems(cond, (name,), f"{name}: ")
    inner += graph_problems(rule.start, rule.steps)
    prefix = ("steps", sid, "follow_ups", index)
    return [
        ((*prefix, *loc), f"step '{sid}', follow-up '{rule.key}': {message}")
        for loc, message in inner
    ]


def _reachable(start: str, steps: dict[str, Any]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in successors(steps[todo.pop()]):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _loop_without_wait(steps: dict[str, Any]) -> list[str] | None:
    """A cycle among steps that do not wait, which would spin without ever sleeping.
    A depth-first search with its own stack: a chain of steps as long as a definition
    allows must not reach Python's recursion limit."""
    busy = {sid for sid, step in steps.items() if not step.waits}
    done: set[str] = set()
    for root in sorted(busy):
        if root in done:
            continue
        # The current path, and for each of its steps the targets not yet looked at.
        path: list[str] = [root]
        on_path = {root}
        pending = [iter(successors(steps[root]))]
        while path:
            target = next((t for t in pending[-1] if t in busy and t not in done), None)
            if target is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            if target in on_path:
                return path[path.index(target) :]
            path.append(target)
            on_path.add(target)
            pending.append(iter(successors(steps[target])))
    return None


def duplicate_action_warnings(defn: JourneyDefinition) -> list[Problem]:
    """Steps that do what a link action already does for a participant who clicks the
    link (A10): not wrong, but likely done twice."""
    by_link: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for _, sid, step in every_step(defn.steps):
        for url, actions in (getattr(step, "link_actions", None) or {}).items():
            for action in actions:
                for signature in action_signatures(action):
                    by_link.setdefault(signature, []).append((sid, url))
    warnings: list[Problem] = []
    for prefix, sid, step in every_step(defn.steps):
        for signature in sorted(action_signatures(step), key=repr):
            for message, url in by_link.get(signature, []):
                warnings.append(
                    (
                        (*prefix, "steps", sid),
                        f"step '{sid}' {describe_signature(signature)}, which the link action "
                        f"on {url} of step '{message}' already does for whoever clicks it",
                    )
                )
    return warnings
