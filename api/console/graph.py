"""A journey's graph as an SVG drawing, laid out on the server for the web console.

The console works without JavaScript, so the layout (grandalf's Sugiyama layered
layout) runs here and the page gets a finished SVG. Both a valid definition and
raw JSON that does not validate (a dangling edge, an unknown step type) go through
the same reader, layout and drawing: the definition is dumped to its JSON form first.

Node ids: a journey step is its id (`welcome`); a step inside a follow-up is the
message step's node id, `follow_ups`, the follow-up's index and the inner step id,
joined by "/" (`welcome/follow_ups/0/remind`, nested: `welcome/follow_ups/0/remind/
follow_ups/1/last`). The follow-up itself is `welcome/follow_ups/0`. A valid step
id has no "/", so the ids never collide.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from math import copysign
from typing import Any, get_args

from grandalf.graphs import Edge as GEdge
from grandalf.graphs import Vertex, graph_core
from grandalf.layouts import SugiyamaLayout, VertexViewer
from markupsafe import Markup, escape

from journeys.definition import JourneyDefinition
from journeys.definition.steps import Step
from journeys.phones import segments

Location = tuple[str | int, ...]
Point = tuple[float, float]


@dataclass(frozen=True)
class StepCounts:
    here: int | None  # participants at this step now (None: still being counted)
    passed: int | None  # participants who went through it


def _shown(number: int | None) -> str:
    return "…" if number is None else str(number)


def step_path(prefix_loc: Location, sid: str) -> str:
    """The node id of step `sid` of the steps mapping at `prefix_loc`, which is ()
    or ("steps", message_id, "follow_ups", index) repeated (as `every_step` gives it)."""
    parts: list[str] = []
    for j in range(0, len(prefix_loc) - 3, 4):
        parts += [str(prefix_loc[j + 1]), "follow_ups", str(prefix_loc[j + 3])]
    return "/".join([*parts, sid])


def follow_up_id(prefix_loc: Location, sid: str, index: int) -> str:
    """The node id of follow-up `index` of message step `sid` (its dashed edge)."""
    return f"{step_path(prefix_loc, sid)}/follow_ups/{index}"


def problems_by_step(problems: Iterable[tuple[Location, str]]) -> dict[str, list[str]]:
    """Messages by the node id of the step they are about; "" for the journey's own."""
    found: dict[str, list[str]] = {}
    for loc, message in problems:
        rest = tuple(loc[1:] if loc[:1] == ("body",) else loc)
        prefix: Location = ()
        node = ""
        while len(rest) >= 2 and rest[0] == "steps":
            sid, rest = rest[1], rest[2:]
            node = step_path(prefix, str(sid))
            # pydantic puts the step's type between its id and its fields
            if rest[1:2] == ("follow_ups",):
                rest = rest[1:]
            if len(rest) < 4 or rest[0] != "follow_ups" or rest[2] != "steps":
                break
            prefix, rest = (*prefix, "steps", sid, "follow_ups", rest[1]), rest[2:]
        found.setdefault(node, []).append(message)
    return found


# Family of each step kind, from the module that defines it (messaging, timing, flow,
# crm, profile), so a new kind gets its colour without a list to keep up to date.
_FAMILY = {
    get_args(cls.model_fields["type"].annotation)[0]: cls.__module__.rsplit(".", 1)[-1]
    for cls in get_args(get_args(Step)[0])
}
_EDGE_FIELDS = ("next", "then", "else", "on_event", "on_timeout")


# ---- reading: a definition's JSON form, valid or not, as nodes and links


@dataclass
class _Node:
    id: str
    kind: str | None  # the step's type; None: a step that is referred to but missing
    title: str
    sid: str  # shown small under a title; "" when the title is the id
    entry: str | None = None
    note: str = ""  # after the kind: an SMS's parts
    counted: bool = True  # False: a box no participant stands in (a message's link actions)


@dataclass(frozen=True)
class _Link:
    src: str
    dst: str
    label: str  # "next" is drawn without a label
    follow_up: str | None = None  # the follow-up's node id, for its dashed edge
    tooltip: str = ""  # the label in full, where it is shortened


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _edges(step: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, target) of each edge field of a step in JSON form; the same edges as
    `StepBase.edges()` for a valid step (tests hold them equal)."""
    found = [(name, step[name]) for name in _EDGE_FIELDS if name in step]
    for branch in map(_dict, _list(step.get("branches"))):
        if "next" in branch:
            found.append((f"{branch.get('percent', '?')}%", branch["next"]))
    return found


def _entry_text(entry: dict[str, Any]) -> str:
    kind = entry.get("type")
    if kind == "api":
        text = "enters through the API"
    elif kind == "event":
        text = f"enters on event {entry.get('name')}"
    elif kind == "selection":
        text = f"enters from selection {entry.get('selection')} every {entry.get('every')}"
    elif kind == "field_change":
        text = f"enters when {entry.get('field')} changes"
        if entry.get("to") is not None:
            text += f" to {json.dumps(entry.get('to'))}"
    else:
        text = f"enters: {kind or '?'}"
    return text + _when(entry)


def _trigger_text(rule: dict[str, Any], link_chars: int = 2000) -> str:
    text = f"on {rule.get('on', '?')}"
    if rule.get("link"):
        text += f" {_fit(str(rule['link']), link_chars)}"
    if rule.get("kinds"):
        text += f" ({', '.join(map(str, _list(rule['kinds'])))})"
    return text + _when(rule)


def _when(rule: dict[str, Any]) -> str:
    """The wait and conditions a follow-up or triggered entry has."""
    text = f" after {rule['wait']}" if rule.get("wait") not in (None, "PT0M") else ""
    return text + (" (conditional)" if rule.get("schedule_if") or rule.get("run_if") else "")


def _actions_text(actions: list[Any]) -> str:
    """Link actions in a few words: "add to selection hot; set plan"."""
    words = []
    for action in map(_dict, actions):
        kind = str(action.get("type", "?"))
        if kind == "update_contact":
            names = [*_dict(action.get("set"))] + [
                str(_dict(op).get("field")) for op in _list(action.get("ops"))
            ]
            words.append(f"set {', '.join(names)}")
        else:
            what = action.get("selection") or action.get("project") or ""
            words.append(f"{kind.replace('_', ' ')} {what}".strip())
    return "; ".join(words) or "nothing"


# What a template adds to an SMS: unknown until it is filled, counted as nothing.
_TEMPLATE_PARTS = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)


def _sms_parts(text: Any) -> str:
    """How many parts the SMS takes (`journeys.phones.segments`): "2 parts", or "≥ 1
    part" when its variables may add more."""
    if not isinstance(text, str) or not text:
        return ""
    fixed = _TEMPLATE_PARTS.sub("", text)
    count = max(1, segments(fixed).count)
    return f"{'≥ ' if fixed != text else ''}{count} part{'' if count == 1 else 's'}"


class _Reader:
    """Nodes and links of a definition in JSON form, drawing what it can: a reference
    to a step that does not exist becomes a node of its own, drawn as missing."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.nodes: dict[str, _Node] = {}
        self.links: list[_Link] = []
        self.start = self._graph(raw.get("steps"), raw.get("start"), (), raw.get("entry"))

    def _graph(self, steps: Any, start: Any, prefix: Location, entry: Any) -> str | None:
        steps = _dict(steps)
        for sid, step in steps.items():
            node, title = step_path(prefix, sid), _dict(step).get("title")
            kind = _dict(step).get("type")
            self.nodes[node] = _Node(
                node,
                str(kind or "unknown"),
                str(title or sid),
                sid if title else "",
                note=_sms_parts(_dict(step).get("text")) if kind == "send_sms" else "",
            )
        first = self._target(steps, prefix, start)
        if first is not None and entry is not None:
            self.nodes[first].entry = _entry_text(_dict(entry))
        for sid, step in steps.items():
            src = step_path(prefix, sid)
            for label, target in _edges(_dict(step)):
                if (dst := self._target(steps, prefix, target)) is not None:
                    self.links.append(_Link(src, dst, label))
            for i, rule in enumerate(map(_dict, _list(_dict(step).get("follow_ups")))):
                inner = (*prefix, "steps", sid, "follow_ups", i)
                dst = self._graph(rule.get("steps"), rule.get("start"), inner, None)
                if dst is not None:
                    fid = follow_up_id(prefix, sid, i)
                    label, full = _trigger_text(rule, 30), _trigger_text(rule)
                    self.links.append(_Link(src, dst, label, fid, full))
            # What a click on each link does at once, hung off the message like a
            # follow-up: a box of its own, not a step anyone waits in.
            for j, (url, actions) in enumerate(_dict(_dict(step).get("link_actions")).items()):
                node = f"{src}/link_actions/{j}"
                self.nodes[node] = _Node(
                    node, "link_actions", _actions_text(_list(actions)), "", counted=False
                )
                label = f"on clicked {_fit(str(url), 30)}"
                self.links.append(_Link(src, node, label, node, f"on clicked {url}"))
        return first

    def _target(self, steps: dict[str, Any], prefix: Location, target: Any) -> str | None:
        if not isinstance(target, str):
            return None
        node = step_path(prefix, target)
        if target not in steps:
            self.nodes.setdefault(node, _Node(node, None, f"missing: {target}", ""))
        return node


# ---- layout


def _search(order: list[str], links: list[tuple[str, str]]) -> tuple[list[str], set[int]]:
    """Depth-first from each of `order`: the nodes in the order found, and the links
    that close a loop (back edges), which the layout turns round. Iterative, as
    journeys can be long chains."""
    out: dict[str, list[tuple[int, str]]] = {node: [] for node in order}
    for i, (src, dst) in enumerate(links):
        out[src].append((i, dst))
    state: dict[str, int] = {}  # 1: on the current path, 2: done (in the order found)
    back: set[int] = set()
    for root in order:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(out[root]))]
        while stack:
            node, todo = stack[-1]
            for i, dst in todo:
                if state.get(dst) == 1:
                    back.add(i)
                elif dst not in state:
                    state[dst] = 1
                    stack.append((dst, iter(out[dst])))
                    break
            else:
                state[node] = 2
                stack.pop()
    return list(state), back


def _layout(
    sizes: dict[str, tuple[float, float]],
    links: list[tuple[str, str, tuple[float, float]]],
    first: str | None,
) -> tuple[dict[str, Point], list[list[Point]], list[Point]]:
    """Centres of the nodes, a polyline per link (from its source's centre to its
    target's) and the centre of its label, all from (0, 0) on.

    Every link goes through a vertex of its own the size of its label, as dot does
    it, so the layout leaves room for labels. A loop's links are handed to grandalf
    as turned round, so that the graph it ranks has none, and drawn their own way.
    """
    if not sizes:
        return {}, [], []
    order, back = _search(
        [first, *(n for n in sizes if n != first)] if first in sizes else list(sizes),
        [(src, dst) for src, dst, _ in links],
    )
    verts = {node: Vertex(node) for node in order}  # in the order found: the start first
    for node, vert in verts.items():
        vert.view = VertexViewer(*sizes[node])
    halves: list[tuple[GEdge, GEdge]] = []
    turned: set[GEdge] = set()
    for i, (src, dst, size) in enumerate(links):
        mid = Vertex(i)
        mid.view = VertexViewer(*size)
        halves.append((GEdge(verts[src], mid), GEdge(mid, verts[dst])))
        if i in back:  # of a step's link to itself only the way back turns round
            turned.update(halves[-1][1:] if src == dst else halves[-1])
    edges = [edge for pair in halves for edge in pair]
    into = Counter(e.v[0] if e in turned else e.v[1] for e in edges)
    # A hidden vertex above the first step of each part that nothing leads to, so that
    # one layout places them all, side by side (grandalf's own split into connected
    # parts orders edges by hash: the drawing would change from run to run).
    top = Vertex(None)
    top.view = VertexViewer(1, 1)
    edges += [GEdge(top, vert) for vert in verts.values() if not into[vert]]
    sug = SugiyamaLayout(graph_core([top, *verts.values(), *(a.v[1] for a, _ in halves)], edges))
    sug.xspace, sug.yspace = 28, 14
    sug.init_all(roots=[top], inverted_edges=[e for e in edges if e in turned])
    sug.draw()
    routes = [_route(sug, a) + _route(sug, b)[1:] for a, b in halves]
    extents = [(v.view.xy, v.view.w, v.view.h) for v in verts.values()]
    extents += [(p, 0.0, 0.0) for route in routes for p in route]
    x0 = min(p[0] - w / 2 for p, w, _ in extents)
    y0 = min(p[1] - h / 2 for p, _, h in extents)

    def at(p: Point) -> Point:
        return (p[0] - x0, p[1] - y0)

    return (
        {node: at(vert.view.xy) for node, vert in verts.items()},
        [[at(p) for p in route] for route in routes],
        [at(a.v[1].view.xy) for a, _ in halves],
    )


def _route(sug: SugiyamaLayout, edge: GEdge) -> list[Point]:
    """Centres along an edge in its own direction, through the dummy vertices the
    layout put on each layer it crosses (also for a reversed edge)."""
    a, b = edge.v
    r0, r1 = sug.grx[a].rank, sug.grx[b].rank
    bends = sug.ctrls.get(edge, {})
    step = 1 if r1 > r0 else -1
    return [a.view.xy, *(bends[r].view.xy for r in range(r0 + step, r1, step)), b.view.xy]


# ---- drawing

_CHAR_W = 0.6  # average glyph width per pixel of font size (sans-serif)
_PAD = 10
_LABEL_CHARS = 60  # longer edge labels are cut, in full in their tooltip
_STYLE = """
.journey-graph{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:12px}
.journey-graph .box{fill:#f6f7f9;stroke:#8a94a6;stroke-width:1.2}
.journey-graph .family-messaging .box{fill:#eaf2ff;stroke:#4a7bd0}
.journey-graph .family-timing .box{fill:#fff6e0;stroke:#c79a2a}
.journey-graph .family-flow .box{fill:#eef8ee;stroke:#4c9a55}
.journey-graph .family-crm .box,.journey-graph .family-profile .box{fill:#f4eefb;stroke:#8561b5}
.journey-graph .missing .box{fill:#fff;stroke:#c62828;stroke-dasharray:4 3}
.journey-graph .problem .box{stroke:#c62828;stroke-width:2.2}
.journey-graph .kind{font-size:10px;fill:#5b6474;text-transform:uppercase;letter-spacing:.04em}
.journey-graph .title{font-size:13px;font-weight:600;fill:#1d2330}
.journey-graph .sid{font-size:10px;fill:#7b8494}
.journey-graph .badge rect{fill:#e4e7ec}.journey-graph .badge text{font-size:10px;fill:#3b4352}
.journey-graph .badge.active rect{fill:#1f6feb}.journey-graph .badge.active text{fill:#fff}
.journey-graph .entry rect{fill:#1d2330}.journey-graph .entry text{font-size:10px;fill:#fff}
.journey-graph .problem-text{font-size:11px;fill:#c62828}
.journey-graph .edge path{fill:none;stroke:#6b7385;stroke-width:1.3}
.journey-graph .follow-up path{stroke:#8561b5;stroke-dasharray:5 4}
.journey-graph .edge-label{font-size:11px;fill:#3b4352}
.journey-graph .edge-label{paint-order:stroke;stroke:#fff;stroke-width:4px}
.journey-graph a:hover .box{stroke-width:2.4}
"""


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _w(text: str, size: float) -> float:
    return len(text) * size * _CHAR_W


def _n(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def _text(x: float, y: float, cls: str, content: Any, anchor: str = "middle") -> str:
    return f'<text class="{cls}" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}">{content}</text>'


@dataclass
class _Card:
    """A node as drawn: an optional entry pill, the box, the problems under it."""

    node: _Node
    counts: StepCounts | None
    problems: list[str]

    def __post_init__(self) -> None:
        node = self.node
        self.kind = "" if node.kind is None else node.kind.replace("_", " ")
        self.kind += f" · {node.note}" if node.note else ""
        self.title, self.sid = _fit(node.title, 34), _fit(node.sid, 40)
        self.pill = _fit(node.entry, 56) if node.entry else ""
        self.lines = [
            line
            for message in self.problems
            for line in textwrap.wrap(message, 40, max_lines=3, placeholder=" …")
        ][:6]
        count_w = 0.0
        if self.counts is not None:
            count_w = _w(f"{_shown(self.counts.here)} here", 10) + _w(
                f"{_shown(self.counts.passed)} passed", 10
            )
        texts = [_w(self.kind, 10.5), _w(self.title, 13), _w(self.sid, 10), count_w + 22]
        self.box_w = max(120.0, max(texts) + 2 * _PAD)
        self.box_h = (50.0 if node.kind is not None else 34.0) + (14 if self.sid else 0)
        self.box_h += 22 if self.counts is not None else 0
        self.top = 24.0 if self.pill else 0.0  # room for the pill above the box
        self.under = 16.0 * len(self.lines) + (8 if self.lines else 0)
        widths = [self.box_w, _w(self.pill, 10) + 20, *(_w(line, 11) for line in self.lines)]
        self.w, self.h = max(widths), self.top + self.box_h + self.under

    def svg(self, cx: float, cy: float, href: str | None) -> str:
        node = self.node
        x, y = cx - self.box_w / 2, cy - self.h / 2 + self.top
        kind = re.sub(r"[^a-z0-9_-]", "_", node.kind or "missing")
        cls = f"step step-kind-{kind} family-{_FAMILY.get(node.kind or '', 'other')}"
        cls += " missing" if node.kind is None else ""
        cls += " problem" if self.problems else ""
        attrs = "" if node.kind is None else f' data-step="{escape(node.id)}"'
        out = [f'<g class="{cls}"{attrs}>']
        tips = ([node.title] if self.title != node.title else []) + self.problems
        if tips:  # in full: the title where it is cut, and the problems
            out.append(f"<title>{escape(chr(10).join(tips))}</title>")
        if href:
            out.append(f'<a href="{escape(href)}">')
        out.append(
            f'<rect class="box" x="{_n(x)}" y="{_n(y)}" width="{_n(self.box_w)}" '
            f'height="{_n(self.box_h)}" rx="8"/>'
        )
        line_y = y + 18
        if node.kind is not None:
            out.append(_text(cx, line_y, "kind", escape(self.kind)))
            line_y += 18
        out.append(_text(cx, line_y, "title", escape(self.title)))
        if self.sid:
            line_y += 14
            out.append(_text(cx, line_y, "sid", escape(self.sid)))
        if self.counts is not None:
            out += self._badges(x + _PAD, line_y + 8, self.counts)
        if href:
            out.append("</a>")
        if self.pill:
            pill_w = _w(self.pill, 10) + 16
            out.append(
                f'<g class="entry"><rect x="{_n(cx - pill_w / 2)}" y="{_n(y - 22)}" '
                f'width="{_n(pill_w)}" height="17" rx="8.5"/>'
                + _text(cx, y - 10, "entry-text", escape(self.pill))
                + "</g>"
            )
        for i, line in enumerate(self.lines):
            out.append(_text(cx, y + self.box_h + 18 + 16 * i, "problem-text", escape(line)))
        out.append("</g>")
        return "".join(out)

    def _badges(self, x: float, y: float, counts: StepCounts) -> list[str]:
        out = []
        for word, number in (("here", counts.here), ("passed", counts.passed)):
            width = _w(f"{_shown(number)} {word}", 10) + 10
            active = " active" if word == "here" and number else ""
            text = f'<tspan data-{word}="">{_shown(number)}</tspan> {word}'
            out.append(
                f'<g class="badge badge-{word}{active}"><rect x="{_n(x)}" y="{_n(y)}" '
                f'width="{_n(width)}" height="16" rx="8"/>'
                f"{_text(x + 5, y + 11.5, 'badge-text', text, 'start')}</g>"
            )
            x += width + 6
        return out


def _edge_svg(link: _Link, path: list[Point], mid: Point, fired: str | None) -> str:
    """`fired`: how often the follow-up fired, as shown ("…" while counted); None: not
    shown."""
    label = "" if link.label == "next" else link.label
    cls = "edge follow-up" if link.follow_up else "edge"
    attrs = f' data-from="{escape(link.src)}" data-to="{escape(link.dst)}"'
    attrs += f' data-follow-up="{escape(link.follow_up)}"' if link.follow_up else ""
    d = "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in path)
    out = [f'<g class="{cls}"{attrs}>']
    if len(label) > _LABEL_CHARS or link.tooltip not in ("", label):
        out.append(f"<title>{escape(link.tooltip or label)}</title>")
    out.append(f'<path d="{d}" marker-end="url(#jg-arrow)"/>')
    lines = [escape(_fit(label, _LABEL_CHARS))] if label else []
    if fired is not None:
        lines.append(Markup('fired <tspan data-fired="">{}</tspan>').format(fired))
    top = mid[1] - 7 * len(lines)  # the lines centred on the label's place
    for i, line in enumerate(lines):
        out.append(_text(mid[0], top + 14 * i + 11, "edge-label", line))
    out.append("</g>")
    return "".join(out)


def _clip(centre: Point, w: float, h: float, toward: Point) -> Point:
    """Where the line from a node's centre toward a point leaves the node: mostly
    through its top or bottom (the layout is layered), kept off the rounded corners."""
    (cx, cy), dx, dy = centre, toward[0] - centre[0], toward[1] - centre[1]
    if abs(dy) * w >= abs(dx) * h and dy:
        x = cx + dx * h / 2 / abs(dy)
        return (max(cx - w / 2 + 10, min(cx + w / 2 - 10, x)), cy + copysign(h / 2, dy))
    if dx:
        return (cx + copysign(w / 2, dx), cy + dy * w / 2 / abs(dx))
    return centre


def _draw(
    reader: _Reader,
    label: str,
    counts: Mapping[str, StepCounts] | None,
    follow_up_counts: Mapping[str, int | None] | None,
    problems: Mapping[str, list[str]] | None,
    step_href: Callable[[str], str | None] | None,
) -> Markup:
    placed: dict[str, list[str]] = {}
    for key, messages in (problems or {}).items():
        # a problem about a step the drawing lacks goes to the message step it hangs on
        while key and key not in reader.nodes and "/follow_ups/" in key:
            key = key.rsplit("/follow_ups/", 1)[0]
        if key in reader.nodes:
            placed.setdefault(key, []).extend(messages)
    cards = {
        node.id: _Card(
            node,
            None
            if counts is None or node.kind is None or not node.counted
            else counts.get(node.id, StepCounts(0, 0)),
            placed.get(node.id, []),
        )
        for node in reader.nodes.values()
    }
    sizes = {node: (card.w, card.h) for node, card in cards.items()}
    links = []
    for link in reader.links:
        lines = [link.label] if link.label != "next" else []
        lines += ["fired 0"] if follow_up_counts and link.follow_up in follow_up_counts else []
        width = max([_w(_fit(line, _LABEL_CHARS), 11) + 8 for line in lines], default=2.0)
        links.append((link.src, link.dst, (width, 14.0 * len(lines) + 4)))
    centres, paths, mids = _layout(sizes, links, reader.start)
    edges = []
    for link, path, mid in zip(reader.links, paths, mids, strict=True):
        src, dst = cards[link.src], cards[link.dst]
        if link.src == link.dst:  # a loop on one step: a narrow U under it
            (sx, sy), (mx, my) = path[0], mid
            bottom = sy + src.h / 2
            path = [(sx - 14, bottom), (mx - 14, my), (mx + 14, my), (sx + 14, bottom)]
        else:
            path[0] = _clip(path[0], src.w, src.h, path[1])
            path[-1] = _clip(path[-1], dst.w, dst.h, path[-2])
        fired = None
        if follow_up_counts is not None and link.follow_up in follow_up_counts:
            fired = _shown(follow_up_counts[link.follow_up or ""])
        edges.append(_edge_svg(link, path, mid, fired))
    steps = [
        cards[node].svg(
            *centres[node],
            step_href(node)
            if step_href and cards[node].node.kind and cards[node].node.counted
            else None,
        )
        for node in cards
    ]
    width = max([x + cards[n].w / 2 for n, (x, _) in centres.items()] + [0.0]) + 32
    height = max([y + cards[n].h / 2 for n, (_, y) in centres.items()] + [0.0]) + 32
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="journey-graph" '
        f'viewBox="-16 -16 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}" '
        f'role="group" aria-label="{escape(label)}"><style>{_STYLE}</style>'
        '<defs><marker id="jg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#6b7385"/></marker></defs>'
        f'<g class="edges">{"".join(edges)}</g><g class="steps">{"".join(steps)}</g></svg>'
    )


def graph_svg_from_raw(
    raw: Mapping[str, Any],
    problems: Mapping[str, list[str]] | None = None,
    step_href: Callable[[str], str | None] | None = None,
) -> Markup:
    """The graph of a definition that may not validate (as the user wrote it)."""
    name = raw.get("name") if isinstance(raw, Mapping) else None
    reader = _Reader(raw if isinstance(raw, Mapping) else {})
    return _draw(reader, f"Journey {name or ''}".strip(), None, None, problems, step_href)


def journey_graph_svg(
    defn: JourneyDefinition,
    counts: Mapping[str, StepCounts] | None = None,
    follow_up_counts: Mapping[str, int | None] | None = None,
    problems: Mapping[str, list[str]] | None = None,
    step_href: Callable[[str], str | None] | None = None,
) -> Markup:
    """The graph of a journey, with participant counts and problems by node id
    (a count of None shows as still being counted)."""
    raw = defn.model_dump(mode="json", by_alias=True, exclude_none=True)
    reader = _Reader(raw)
    return _draw(reader, f"Journey {defn.name}", counts, follow_up_counts, problems, step_href)
