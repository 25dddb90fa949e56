"""The size limits of a definition, and the cheap check that holds them.

Every other limit fits under these (docs/limits.md says why each is what it is):
- a run shows the steps it took in one search attribute, and Temporal refuses a
  value over 2,048 bytes (and then terminates the run): `MAX_STEPS` steps of a
  graph fit as short tokens (`journeys.models.shown_steps_taken`);
- the worker decodes a run's input with pydantic's JSON parser, which stops at about
  250 levels: `MAX_JSON_DEPTH` leaves room for the input's own wrapping;
- the checks and the evaluator walk conditions and follow-ups; with these depths
  no walk comes near Python's recursion limit, and a refusal stays short.

`size_problems` reads the raw JSON, before any model is built, without recursion,
so a body made to be deep or long is refused in time linear in its size.
"""

from __future__ import annotations

import json
from typing import Any

from journeys.definition.common import Location, Problem

# Steps of one graph: a journey's own, or one follow-up's.
MAX_STEPS = 200
# Steps of a journey with all its follow-ups' steps, at every depth.
MAX_STEPS_IN_ALL = 1000
# Follow-ups inside a follow-up's message, inside …: this many levels.
MAX_FOLLOW_UP_DEPTH = 5
# `all`, `any` and `not` inside each other.
MAX_CONDITION_DEPTH = 20
# Nesting of the JSON of a definition (or any request body).
MAX_JSON_DEPTH = 100
# Characters of one template (a mail's HTML or text, a notice's body), and of a subject
# (a header line: RFC 5322 allows 998 characters).
MAX_TEMPLATE_CHARS = 500_000
MAX_SUBJECT_CHARS = 998
# An SMS: the characters providers take in one request, and the parts a text may
# take once filled in (a step's `max_segments` may say fewer).
SMS_MAX_CHARS = 1600
SMS_MAX_SEGMENTS = 10
# Bytes of a definition's JSON: every run carries it in its input, and Temporal refuses
# a payload over 2 MB (and warns from 512 kB).
MAX_DEFINITION_BYTES = 1_000_000

_COMBINATORS = ("all", "any", "not")
DEPTH_PROBLEM = f"nests deeper than {MAX_JSON_DEPTH} levels (the limit of a request body)"


def json_depth_problem(data: Any) -> Problem | None:
    """Where `data` nests deeper than `MAX_JSON_DEPTH` levels (the first such place), or
    None."""
    limit = MAX_JSON_DEPTH
    todo: list[tuple[Any, int, Location]] = [(data, 1, ())]
    while todo:
        node, depth, loc = todo.pop()
        if isinstance(node, dict):
            children: Any = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if depth > limit:
            return loc, DEPTH_PROBLEM
        todo.extend((child, depth + 1, (*loc, key)) for key, child in children)
    return None


def size_problems(data: Any) -> list[Problem]:
    """The limits a raw definition (parsed JSON, not yet validated) breaks: its JSON
    depth, the steps of each graph and in all, follow-up depth and condition depth.
    Shapes it does not recognise are left to validation."""
    if (deep := json_depth_problem(data)) is not None:
        return [deep]
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(errors="replace"))
    if size > MAX_DEFINITION_BYTES:
        return [((), f"{size:,} bytes of JSON; a definition has at most {MAX_DEFINITION_BYTES:,}")]
    problems: list[Problem] = []
    in_all = 0
    # (steps mapping, its location, follow-up depth)
    graphs: list[tuple[Any, Location, int]] = []
    if isinstance(data, dict):
        graphs.append((data.get("steps"), ("steps",), 0))
    while graphs:
        steps, loc, depth = graphs.pop()
        if not isinstance(steps, dict):
            continue
        if len(steps) > MAX_STEPS:
            problems.append(
                (loc, f"{len(steps)} steps; a journey or follow-up has at most {MAX_STEPS}")
            )
        in_all += len(steps)
        for sid, step in steps.items():
            rules = step.get("follow_ups") if isinstance(step, dict) else None
            if not isinstance(rules, list):
                continue
            for i, rule in enumerate(rules):
                at = (*loc, sid, "follow_ups", i)
                if depth + 1 > MAX_FOLLOW_UP_DEPTH:
                    problems.append(
                        (
                            at,
                            f"follow-ups nest {depth + 1} levels deep; "
                            f"at most {MAX_FOLLOW_UP_DEPTH}",
                        )
                    )
                elif isinstance(rule, dict):
                    graphs.append((rule.get("steps"), (*at, "steps"), depth + 1))
    if in_all > MAX_STEPS_IN_ALL:
        problems.append(
            (("steps",), f"{in_all} steps with its follow-ups'; at most {MAX_STEPS_IN_ALL}")
        )
    if (nested := condition_depth_problem(data)) is not None:
        problems.append(nested)
    return problems


def condition_depth_problem(data: Any) -> Problem | None:
    """The first place where `all`, `any` and `not` nest deeper than allowed."""
    todo: list[tuple[Any, int, Location]] = [(data, 0, ())]
    while todo:
        node, depth, loc = todo.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                inner = depth + 1 if key in _COMBINATORS else depth
                if inner > MAX_CONDITION_DEPTH:
                    return (
                        (*loc, key),
                        f"a condition nests all/any/not {inner} levels deep; "
                        f"at most {MAX_CONDITION_DEPTH}",
                    )
                todo.append((child, inner, (*loc, key)))
        elif isinstance(node, list):
            todo.extend((child, depth, (*loc, i)) for i, child in enumerate(node))
    return None
