"""The console's drawing of a journey's graph: what a user reading the SVG would check."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

from api.console.graph import (
    StepCounts,
    follow_up_id,
    graph_svg_from_raw,
    journey_graph_svg,
    problems_by_step,
    step_path,
)
from journeys.definition import JourneyDefinition
from journeys.definition.graph import every_step
from tests.builders import journey, linear_journey, mail, wait

SVG = "{http://www.w3.org/2000/svg}"

FOLLOW_UPS: dict[str, Any] = journey(
    "welcome",
    entry={"type": "event", "name": "order_placed"},
    steps={
        "welcome": {
            **mail("Welcome"),
            "title": "Say hello",
            "next": "wait_open",
            "follow_ups": [
                {
                    "key": "clicker",
                    "on": "clicked",
                    "link": "https://example.com/pricing",
                    "wait": "P2D",
                    "start": "thanks",
                    "steps": {
                        "thanks": {
                            "type": "send_sms",
                            "text": "Thanks",
                            "next": "done",
                            "follow_ups": [
                                {
                                    "key": "bounced",
                                    "on": "delivery_error",
                                    "start": "tell",
                                    "steps": {
                                        "tell": {
                                            "type": "notify",
                                            "to": "sales",
                                            "subject": "s",
                                            "body": "b",
                                            "next": "over",
                                        },
                                        "over": {"type": "end"},
                                    },
                                }
                            ],
                        },
                        "done": {"type": "end"},
                    },
                },
                {
                    "key": "opener",
                    "on": "opened",
                    "start": "bye",
                    "steps": {"bye": {"type": "end"}},
                },
            ],
        },
        "wait_open": {
            "type": "wait_for_event",
            "event": "opened",
            "message": "welcome",
            "timeout": "P3D",
            "on_event": "vip",
            "on_timeout": "ab",
        },
        "vip": {
            "type": "branch",
            "if": {"field": "plan", "op": "eq", "value": "pro"},
            "then": "tag",
            "else": "end",
        },
        "tag": {"type": "update_contact", "set": {"vip": True}, "next": "end"},
        "ab": {
            "type": "split",
            "branches": [{"percent": 70, "next": "end"}, {"percent": 30, "next": "pause"}],
        },
        "pause": {**wait("P1D"), "next": "end"},
        "end": {"type": "end"},
    },
)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))  # well-formed XML, or this fails


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def step_groups(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-step", ""): g for g in root.iter(f"{SVG}g") if "step" in classes(g)}


def text_of(el: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in el.iter(f"{SVG}text")]


def box(group: ET.Element) -> tuple[float, float, float, float]:
    rect = next(r for r in group.iter(f"{SVG}rect") if "box" in classes(r))
    return tuple(float(rect.get(a, "")) for a in ("x", "y", "width", "height"))  # type: ignore[return-value]


def edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "edge" in classes(g)]


def edge(root: ET.Element, src: str, dst: str) -> ET.Element:
    (found,) = [e for e in edges(root) if (e.get("data-from"), e.get("data-to")) == (src, dst)]
    return found


def points(edge_group: ET.Element) -> list[tuple[float, float]]:
    d = next(edge_group.iter(f"{SVG}path")).get("d", "")
    return [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", d)]


def draw(data: dict[str, Any], **kwargs: Any) -> ET.Element:
    return parse(journey_graph_svg(JourneyDefinition.model_validate(data), **kwargs))


def test_a_box_per_step_follow_up_steps_included() -> None:
    root = draw(FOLLOW_UPS)
    assert set(step_groups(root)) == {
        "welcome",
        "wait_open",
        "vip",
        "tag",
        "ab",
        "pause",
        "end",
        "welcome/follow_ups/0/thanks",
        "welcome/follow_ups/0/done",
        "welcome/follow_ups/0/thanks/follow_ups/0/tell",
        "welcome/follow_ups/0/thanks/follow_ups/0/over",
        "welcome/follow_ups/1/bye",
    }
    welcome = step_groups(root)["welcome"]
    assert {"step-kind-send_email", "family-messaging"} <= classes(welcome)
    assert text_of(welcome)[:3] == ["send email", "Say hello", "welcome"]
    assert "enters on event order_placed" in text_of(root)
    assert text_of(step_groups(root)["wait_open"])[:2] == ["wait for event", "wait_open"]
    assert root.get("viewBox") and root.get("width") and root.get("height")


def test_an_sms_box_shows_its_parts() -> None:
    """160 GSM-7 characters are one part, 161 two (153 a part); one character outside
    GSM-7 makes it UCS-2 (70, then 67 a part); variables may add more ("≥")."""
    texts = {
        "one": "x" * 160,
        "two": "x" * 161,
        "accents": "é" + "ü" * 70,  # é and ü are GSM-7: one part of 71 septets
        "euro": "€" * 81,  # € is GSM-7's extension: two septets each, 162
        "cyrillic": "Я" * 71,
        "filled": "Hi {{ contact.first_name }}, " + "x" * 150,
    }
    definition = linear_journey(
        "texts", "Texts", *((sid, {"type": "send_sms", "text": t}) for sid, t in texts.items())
    )
    boxes = step_groups(draw(definition))
    assert {sid: text_of(boxes[sid])[0] for sid in texts} == {
        "one": "send sms · 1 part",
        "two": "send sms · 2 parts",
        "accents": "send sms · 1 part",
        "euro": "send sms · 2 parts",
        "cyrillic": "send sms · 2 parts",
        "filled": "send sms · ≥ 1 part",
    }
    assert text_of(boxes["end"])[0] == "end"


def test_node_ids_follow_every_step() -> None:
    defn = JourneyDefinition.model_validate(FOLLOW_UPS)
    ids = {step_path(prefix, sid) for prefix, sid, _ in every_step(defn.steps)}
    assert ids == set(step_groups(draw(FOLLOW_UPS)))
    assert step_path((), "welcome") == "welcome"
    assert follow_up_id((), "welcome", 0) == "welcome/follow_ups/0"
    inner = ("steps", "welcome", "follow_ups", 0)
    assert step_path(inner, "thanks") == "welcome/follow_ups/0/thanks"
    # a step may be called "steps"
    assert step_path(("steps", "steps", "follow_ups", 2), "x") == "steps/follow_ups/2/x"


def test_edges_are_those_of_the_definition_with_their_labels() -> None:
    defn = JourneyDefinition.model_validate(FOLLOW_UPS)
    expected = {
        (step_path(prefix, sid), step_path(prefix, e.target), e.label)
        for prefix, sid, step in every_step(defn.steps)
        for e in step.edges()
    }
    root = draw(FOLLOW_UPS)
    drawn = {
        (e.get("data-from"), e.get("data-to"), " ".join(text_of(e)) or "next")
        for e in edges(root)
        if "follow-up" not in classes(e)
    }
    assert drawn == expected
    assert {"then", "else", "on_event", "on_timeout", "70%", "30%"} <= {
        label for _, _, label in drawn
    }
    # every edge ends in an arrowhead
    assert all(next(e.iter(f"{SVG}path")).get("marker-end") for e in edges(root))


def test_follow_ups_hang_off_their_message_by_a_labelled_dashed_edge() -> None:
    root = draw(FOLLOW_UPS, follow_up_counts={"welcome/follow_ups/0": 4})
    clicked = edge(root, "welcome", "welcome/follow_ups/0/thanks")
    assert "follow-up" in classes(clicked)
    assert clicked.get("data-follow-up") == "welcome/follow_ups/0"
    assert text_of(clicked) == ["on clicked https://example.com/pricing after P2D", "fired 4"]
    assert clicked.find(f"{SVG}title") is None  # shown in full
    assert (
        next(t for t in clicked.iter(f"{SVG}tspan") if t.get("data-fired") is not None).text == "4"
    )
    nested = edge(
        root, "welcome/follow_ups/0/thanks", "welcome/follow_ups/0/thanks/follow_ups/0/tell"
    )
    assert text_of(nested) == ["on delivery_error"]  # no count given for it
    assert text_of(edge(root, "welcome", "welcome/follow_ups/1/bye")) == ["on opened"]
    assert "stroke-dasharray" in next(root.iter(f"{SVG}style")).text  # type: ignore[operator]


def test_link_actions_hang_off_their_message_in_a_box_of_their_own() -> None:
    """What a click on a link does at once (A10's link actions) is drawn: a box per link
    saying what it does, on a dashed edge labelled with the link; no one stands in it,
    so it has no counts and no link to a list of participants."""
    data = journey(
        "linked",
        steps={
            "offer": {
                **mail("Offer"),
                "link_actions": {
                    "https://example.com/pricing": [
                        {"type": "add_to_selection", "selection": "hot"},
                        {"type": "update_contact", "set": {"plan": "trial"}},
                    ]
                },
                "next": "end",
            },
            "end": {"type": "end"},
        },
    )
    root = draw(
        data,
        counts={"offer": StepCounts(1, 2), "end": StepCounts(0, 2)},
        step_href=lambda node: f"/console/journeys/linked?step={node}",
    )
    actions = step_groups(root)["offer/link_actions/0"]
    assert text_of(actions) == ["link actions", "add to selection hot; set plan"]
    assert "follow-up" in classes(edge(root, "offer", "offer/link_actions/0"))
    assert text_of(edge(root, "offer", "offer/link_actions/0")) == [
        "on clicked https://example.com/pricing"
    ]
    assert "here" in " ".join(text_of(step_groups(root)["offer"]))
    assert step_groups(root)["offer"].find(f"{SVG}a") is not None
    assert actions.find(f"{SVG}a") is None


def test_counts_appear_in_their_box() -> None:
    root = draw(
        FOLLOW_UPS,
        counts={"wait_open": StepCounts(3, 10), "welcome/follow_ups/0/thanks": StepCounts(0, 2)},
    )
    groups = step_groups(root)

    def numbers(node: str) -> tuple[str, str, bool]:
        group = groups[node]
        here = next(t for t in group.iter(f"{SVG}tspan") if t.get("data-here") is not None)
        passed = next(t for t in group.iter(f"{SVG}tspan") if t.get("data-passed") is not None)
        active = any("active" in classes(g) for g in group.iter(f"{SVG}g"))
        return here.text or "", passed.text or "", active

    assert numbers("wait_open") == ("3", "10", True)
    assert numbers("welcome/follow_ups/0/thanks") == ("0", "2", False)
    assert numbers("end") == ("0", "0", False)
    assert "3 here" in text_of(groups["wait_open"])
    # without counts, no badges
    assert not any(t.get("data-here") is not None for t in draw(FOLLOW_UPS).iter(f"{SVG}tspan"))


def test_problems_are_placed_on_their_step() -> None:
    problems = problems_by_step(
        [
            (("body", "steps", "vip", "then"), "then 'x' is not a step of this journey"),
            (
                ("steps", "welcome", "follow_ups", 0, "steps", "thanks", "text"),
                "text is too long",
            ),
            (("exit_if",), "exit_if: message 'x' is not a send_email step"),
        ]
    )
    root = draw(FOLLOW_UPS, problems=problems)
    groups = step_groups(root)
    assert "problem" in classes(groups["vip"])
    assert "then 'x' is not a step of this" in " ".join(text_of(groups["vip"]))
    assert groups["vip"].find(f"{SVG}title").text == "then 'x' is not a step of this journey"  # type: ignore[union-attr]
    assert "problem" in classes(groups["welcome/follow_ups/0/thanks"])
    assert "problem" not in classes(groups["wait_open"])
    assert "exit_if" not in " ".join(text_of(root))  # the page lists journey-level problems


def test_problems_by_step_reads_api_and_pydantic_locations() -> None:
    assert problems_by_step(
        [
            (("body", "steps", "a", "next"), "one"),
            (("steps", "a", "send_email", "subject"), "two"),  # pydantic names the type
            (("body", "steps", "a", "send_email", "follow_ups", 1, "steps", "b", "wait"), "three"),
            (("steps", "a", "follow_ups", 0, "key"), "four"),  # the rule, on its message
            (("steps", "a", "follow_ups", 0, "steps", "b", "follow_ups", 2, "steps", "c"), "five"),
            (("start",), "six"),
            (("body", "entry", "name"), "seven"),
        ]
    ) == {
        "a": ["one", "two", "four"],
        "a/follow_ups/1/b": ["three"],
        "a/follow_ups/0/b/follow_ups/2/c": ["five"],
        "": ["six", "seven"],
    }


def test_a_raw_definition_with_a_dangling_edge_still_draws() -> None:
    raw: dict[str, Any] = {
        "key": "broken",
        "name": "Broken",
        "entry": {"type": "selection", "selection": "vips", "every": "P1D"},
        "start": "a",
        "steps": {
            "a": {"type": "send_fax", "title": "Fax them", "next": "nowhere"},
            "b": {"type": "wait", "duration": "P1D", "next": "b"},  # a loop on itself
            "c": 5,
        },
    }
    problems = problems_by_step(
        [(("body", "steps", "a", "next"), "next 'nowhere' is not a step of this journey")]
    )
    root = parse(graph_svg_from_raw(raw, problems=problems))
    groups = step_groups(root)
    assert {"a", "b", "c"} <= set(groups)
    assert "problem" in classes(groups["a"])
    assert text_of(groups["a"])[:2] == ["send fax", "Fax them"]
    (missing,) = [g for g in root.iter(f"{SVG}g") if "missing" in classes(g)]
    assert text_of(missing) == ["missing: nowhere"]
    assert edge(root, "a", "nowhere") is not None
    assert edge(root, "b", "b") is not None
    assert "enters from selection vips every P1D" in text_of(root)
    # nothing usable at all still gives a (blank) drawing
    parse(graph_svg_from_raw({"steps": [1, 2], "start": 3}))


def test_no_box_overlaps_another() -> None:
    for root in (draw(FOLLOW_UPS), draw(forty_steps())):
        boxes = [box(g) for g in step_groups(root).values()]
        for i, (x1, y1, w1, h1) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[i + 1 :]:
                assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1


def test_a_linear_journey_goes_top_to_bottom() -> None:
    data = linear_journey(
        "line", "Line", ("one", mail("1")), ("two", wait("P1D")), ("three", mail("3"))
    )
    groups = step_groups(draw(data))
    tops = [box(groups[node])[1] for node in ("one", "two", "three", "end")]
    assert tops == sorted(tops) and len(set(tops)) == 4
    bottoms = [box(groups[node])[1] + box(groups[node])[3] for node in ("one", "two", "three")]
    assert all(bottom < top for bottom, top in zip(bottoms, tops[1:], strict=True))


def test_titles_are_escaped() -> None:
    data = copy.deepcopy(FOLLOW_UPS)
    data["steps"]["tag"]["title"] = '<script>alert("x")</script>'
    svg = str(journey_graph_svg(JourneyDefinition.model_validate(data)))
    assert "<script" not in svg
    root = parse(svg)
    assert not list(root.iter(f"{SVG}script"))
    assert '<script>alert("x")</script>' in text_of(step_groups(root)["tag"])


def test_a_loop_lays_out_with_its_arrow_pointing_back() -> None:
    data = journey(
        "loop",
        steps={
            "mail": {**mail("Hi"), "next": "wait"},
            "wait": {
                "type": "wait_for_event",
                "event": "clicked",
                "message": "mail",
                "timeout": "P1D",
                "on_event": "done",
                "on_timeout": "check",
            },
            "check": {
                "type": "branch",
                "if": {"field": "plan", "op": "eq", "value": "pro"},
                "then": "done",
                "else": "wait",
            },
            "done": {"type": "end"},
        },
    )
    root = draw(data)
    groups = step_groups(root)
    back = points(edge(root, "check", "wait"))

    def on_border(point: tuple[float, float], node: str) -> bool:
        x, y, w, h = box(groups[node])
        inside = x - 1 <= point[0] <= x + w + 1 and y - 1 <= point[1] <= y + h + 1
        return (
            inside
            and min(
                abs(point[0] - x), abs(point[0] - x - w), abs(point[1] - y), abs(point[1] - y - h)
            )
            <= 1
        )

    assert on_border(back[0], "check") and on_border(back[-1], "wait")
    assert box(groups["check"])[1] > box(groups["wait"])[1]  # the loop goes back up


def test_step_links_and_determinism() -> None:
    defn = JourneyDefinition.model_validate(FOLLOW_UPS)
    svg = journey_graph_svg(defn, step_href=lambda node: None if "/" in node else f"/s?step={node}")
    root = parse(svg)
    links = {a.get("href") for a in root.iter(f"{SVG}a")}
    assert "/s?step=welcome" in links and len(links) == 7
    assert (
        journey_graph_svg(
            defn, step_href=lambda node: f"/s?step={node}" if "/" not in node else None
        )
        == svg
    )


def forty_steps() -> dict[str, Any]:
    steps: list[tuple[str, dict[str, Any]]] = []
    for i in range(17):
        steps += [
            (f"mail{i}", {**mail(f"Mail {i}"), "title": f"Newsletter number {i}"}),
            (f"wait{i}", wait("P1D")),
        ]
    data = linear_journey("long", "Long", *steps)
    for i in range(0, 17, 3):  # some branches, to the next mail and two ahead
        data["steps"][f"wait{i}"] = {
            "type": "branch",
            "if": {"field": "plan", "op": "eq", "value": "pro"},
            "then": f"mail{i + 1}",
            "else": f"mail{min(i + 3, 16)}" if i < 16 else "end",
        }
    for i in range(1, 16, 3):
        data["steps"][f"extra{i}"] = {**wait("PT1H"), "next": f"mail{i + 1}"}
        data["steps"][f"wait{i}"]["next"] = f"extra{i}"
    return data


def test_forty_steps_render() -> None:
    data = forty_steps()
    assert len(data["steps"]) >= 40
    root = draw(data, counts={"mail3": StepCounts(5, 7)})
    assert len(step_groups(root)) == len(data["steps"])
