"""Checks over the whole graph that pydantic cannot express per field.

Dangling edges, unreachable steps, loops without a wait and each step's own
references; every problem comes with the location of the offending step so the
API can report them all at once.
"""

from __future__ import annotations

from typing import Any

from journeys.definition.common import Problem, step_problem
from journeys.definition.conditions import MessageWas, condition_parts
from journeys.definition.journey import JourneyDefinition


def successors(step: Any) -> list[str]:
    """The step ids a step can go to next."""
    return [edge.target for edge in step.edges()]


def definition_problems(defn: JourneyDefinition) -> list[Problem]:
    """Every graph-level problem of a definition as (location, message)."""
    problems: list[Problem] = []
    steps = defn.steps
    if defn.start not in steps:
        problems.append((("start",), f"start step '{defn.start}' is not a step of this journey"))
    for sid, step in steps.items():
        for edge in step.edges():
            if edge.target not in steps:
                problems.append(
                    step_problem(
                        sid, edge.loc, f"{edge.label} '{edge.target}' is not a step of this journey"
                    )
                )
        problems.extend(step.problems(sid, steps))
    if defn.exit_if is not None:
        problems.extend(
            (("exit_if",), f"exit_if: message '{leaf.message}' is not a send_email step")
            for leaf in condition_parts(defn.exit_if)
            if isinstance(leaf, MessageWas)
            and getattr(steps.get(leaf.message), "type", None) != "send_email"
        )
    if problems:
        return problems
    reachable = _reachable(defn.start, steps)
    for sid in steps:
        if sid not in reachable:
            problems.append(
                (("steps", sid), f"step '{sid}' cannot be reached from start '{defn.start}'")
            )
    cycle = _loop_without_wait(steps)
    if cycle:
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(
            (("steps", cycle[0]), f"step '{cycle[0]}' is on a loop without a wait: {path}")
        )
    return problems


def _reachable(start: str, steps: dict[str, Any]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in successors(steps[todo.pop()]):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _loop_without_wait(steps: dict[str, Any]) -> list[str] | None:
    """A cycle among steps that do not wait, which would spin without ever sleeping."""
    busy = {sid for sid, step in steps.items() if not step.waits}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(sid: str) -> list[str] | None:
        state[sid] = 1
        path.append(sid)
        for target in successors(steps[sid]):
            if target not in busy:
                continue
            if state.get(target) == 1:
                return path[path.index(target) :]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[sid] = 2
        return None

    for sid in sorted(busy):
        if sid not in state and (found := visit(sid)):
            return found
    return None
