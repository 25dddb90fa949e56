"""Tracking parsed once per skeleton gives every mail the parts a parse of its own gives.

`journeys.tracking._plan` is a shortcut: wherever it is taken, its output must be the
output of the full parse, byte for byte. The property test renders random templates
(links, comments, `<pre>`, hidden elements, references, values in every position,
`|safe`, block filters) with random values (markup, quotes, references, white space,
empty, none) and compares both ways.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pairs import HTML
from journeys import tracking
from journeys.templates import render, render_html

BASE, SECRET, MID = "https://t.example", "s3cret", "6f1c3d52-8a4e-4b7f-9c2d-1e5a7b9c0d13"
AUTHORED_TEXT = "Read https://x.example/a or (https://y.example/z). Mail a@example.com."

FRAGMENTS = [
    "<p>",
    "</p>",
    "<h1>",
    "</h1>",
    "<br>",
    "<pre>",
    "</pre>",
    "<title>",
    "</title>",
    "<style>",
    "</style>",
    "<ul><li>",
    "<td>",
    "<body>",
    "</body>",
    '<a href="https://x.example/a">',
    '<a href="https://x.example/b?x=1&amp;y=2">',
    "<a href=https://x.example/c>",
    '<a href="mailto:a@example.com">',
    "</a>",
    '<img src="https://cdn.example/i.png" alt="Logo">',
    '<img src="https://cdn.example/{{ contact.b }}.png" alt="{{ contact.a }}">',
    "<!-- a comment -->",
    '<!--[if mso]><a href="https://x.example/mso">m</a><![endif]-->',
    "<!-- {{ contact.b }} -->",
    '<!--{{ contact.a }}<a href="https://x.example/m">m</a><![endif]-->',
    "&amp;",
    "&",
    "&l",
    "<",
    "</",
    "<!-",
    " ",
    "  ",
    "\n",
    "text",
    "Hello, ",
    "https://x.example/a",
    "{{ contact.a }}",
    "{{ contact.b }}",
    "{{ contact.n }}",
    "{{ contact.c|safe }}",
    "{{ contact.a|upper }}",
    '<a href="https://x.example/?u={{ contact.a }}">',
    '<a href="{{ contact.b }}">',
    "{% if contact.flag %}<p>yes</p>{% else %}{{ contact.b }}{% endif %}",
    "{% for x in [1, 2] %}<p>{{ x }} {{ contact.a }}</p>{% endfor %}",
    "<{{ contact.a }}>",
    "</{{ contact.a }}>",
    "<p class={{ contact.b }}>",
    "{% filter upper %}{{ contact.a }}{% endfilter %}",
    "{% set s %}{{ contact.a }}{% endset %}{{ s }}",
    '<p title="{{ contact.b }}" class=x>',
    "<p title={{ contact.a }}",
    '"',
    "<script {{ contact.a }}>",
    "</script>",
    "</style",
    "<![if !mso]",
    "<![CDATA[",
    "]>",
    "<!-- note --",
    "&#000",
    "&#xE000;",
    "&#xf09a;",
    '<p a==" b="{{ contact.a }}">',
    '<p\xa0a="',
    "{% set _ = contact.list.append(1) %}",
    "\ue000",
]

VALUES = st.one_of(
    st.none(),
    st.integers(-5, 5),
    # names, markup, the rest of a reference or a tag, a link's own address, the start
    # of a conditional comment
    st.sampled_from(
        [
            *("Ann", "Bob Lee", "O'Neil", "A&B", "<b>", "lt;", "b>", "-->", "é"),
            *("https://x.example/a", "a@example.com", "[if mso]", "/", "=", " ", "re", "65"),
        ]
    ),
    st.text(alphabet=list("ab <>&\"'\t\n\xa0é;#ltp/-!"), max_size=8),
)


def both_ways(template: str, contact: dict[str, Any], text: str | None) -> None:
    html = render(template, contact, html=True)
    rendered, skeleton = render_html(template, contact)
    assert rendered == html
    expected = tracking.tracked_parts(html, text, BASE, SECRET, MID)
    assert tracking.tracked_parts(html, text, BASE, SECRET, MID, skeleton=skeleton) == expected


@settings(max_examples=3000, deadline=None)
@given(
    fragments=st.lists(st.sampled_from(FRAGMENTS), max_size=30),
    a=VALUES,
    b=VALUES,
    c=VALUES,
    n=VALUES,
    flag=st.booleans(),
    authored=st.booleans(),
)
def test_the_plan_gives_what_a_full_parse_gives(
    fragments: list[str], a: Any, b: Any, c: Any, n: Any, flag: bool, authored: bool
) -> None:
    contact = {"a": a, "b": b, "c": c, "n": n, "flag": flag, "list": []}
    both_ways("".join(fragments), contact, AUTHORED_TEXT if authored else None)


@pytest.mark.parametrize(
    ("template", "value", "authored"),
    [
        # a link whose text is its own address shows the address once
        ('<a href="https://x.example/a">{{ contact.a }}</a>', "https://x.example/a", False),
        ('<a href="mailto:a@example.com">{{ contact.a }}</a>', "a@example.com", False),
        # a value makes a comment an Outlook conditional one, whose links are tracked
        ('<!--{{ contact.a }}<a href="https://x.example/m">m</a><![endif]-->', "[if mso]", False),
        # a value makes an image a tracking pixel, which is no link text
        ('<a href="https://x.example/a"><img alt="Logo" width="{{ contact.a }}"></a>', "1", False),
        # a value completes a tag name: <pre> keeps white space
        ("<p{{ contact.a }}>x  y", "re", False),
        ("<pre>x</pre{{ contact.a }}>  y  z", "", False),
        # ... a tag, a reference (of any length when numeric)
        ("<p><{{ contact.a }}</p>", "b>", False),
        ("<p>&{{ contact.a }}</p>", "lt;", False),
        ("<p><!-{{ contact.a }}</p>", "-x-->", False),
        ("<p>&#" + "0" * 33 + "{{ contact.a }}</p>", "65", False),
        ("<p>&#x" + "0" * 33 + "{{ contact.a }}</p>", "3c;", False),
        # ... the end of a style element, so that its link is a link
        ('<style></style{{ contact.a }}><a href="https://x.example/">go</a></style>', "", True),
        # ... a start tag that ends itself (no script content, no <body>)
        ('<script {{ contact.a }}><a href="https://x.example/">go</a></script>', "/", True),
        ("<body class={{ contact.a }}><p>x</p></body>", "x /", True),
        # ... a quoted attribute value that hides a link
        ('<p title={{ contact.a }}"y><a href="https://x.example/">go</a>">', " ", True),
        # ... the end of a marked section, or its name
        ('<![if !mso]{{ contact.a }}><a href="https://x.example/">go</a><![endif]>', "", True),
        ('<![CDATA{{ contact.a }}<a href="https://x.example/">go</a>', "re", False),
        # ... the end of a comment left open in the skeleton
        ("<p>Hi</p><!-- note --{{ contact.a }}>", "-", False),
        # ... which quotes pair up in a start tag html.parser reads its tolerant way
        ('<p a==" b="{{ contact.a }}">Hi <a href="https://x.example/">go</a> "', "x=", False),
        ('<p a==" b="{{ contact.a }}">Hi <a href="https://x.example/">go</a> "', "x=", True),
        ('<p\xa0a="b c=" d="{{ contact.a }}">Hi <a href="https://x.example/">go</a> "', "x=", True),
        ('<p a==" b="{{ contact.a }}">Hi', "x=", False),
        # a tag name a value finishes, where a NUL makes html.parser read the tag as text
        (
            '<s{{ contact.a }}\x00><a href="https://x.example/">go</a></script><p>x</p>',
            "cript x",
            False,
        ),
        ("<p>Hi</p><b{{ contact.a }}\x00><p>Bye</p>", "ody x", False),
        # references to private-use characters (icon fonts) are no markers
        ("<p>Hi {{ contact.a }} &#xE000;</p>", "Ann", False),
        ("<p>Hi {{ contact.a }}</p><p>Follow us &#xf09a;</p>", "Ann", False),
        ("<p>Hi {{ contact.a }} &#63743;</p>", "Ann", False),
        (
            '<p>Hi {{ contact.a }}</p><a href="https://x.example/" title="&#xF8FF; Go">go</a>',
            "Ann",
            True,
        ),
    ],
)
def test_each_rule_of_the_plan_is_needed(template: str, value: str, authored: bool) -> None:
    """Each case gives other parts when its rule (`journeys.tracking`) is left out."""
    both_ways(template, {"a": value}, AUTHORED_TEXT if authored else None)


def test_a_template_that_changes_its_variables_does_so_once() -> None:
    """The second rendering, for the skeleton, must not append again."""
    contact = {"tags": ["a"]}
    html, skeleton = render_html(
        '{% set _ = contact.tags.append("vip") %}<p>{{ contact.tags|join(",") }}</p>', contact
    )
    assert html == "<p>a,vip</p>" and contact["tags"] == ["a", "vip"]
    assert skeleton is None


def test_a_newsletter_is_parsed_once_for_all_its_mails() -> None:
    tracking._plan.cache_clear()
    for i in range(20):
        both_ways(HTML, {"first_name": f"Reader {i}"}, None)
    info = tracking._plan.cache_info()
    assert (info.misses, info.hits) == (1, 19)
    _, skeleton = render_html(HTML, {"first_name": "Ann"})
    assert skeleton is not None
    plan = tracking._plan(skeleton.html, True)
    assert plan is not None and plan.fits(skeleton)
    assert plan.links == [
        "https://example.com/offer",
        "https://example.com/faq",
        "https://example.com/contact",
    ]


def skeleton_of(template: str, **contact: Any) -> str:
    _, skeleton = render_html(template, contact)
    assert skeleton is not None
    return skeleton.html


def test_where_a_value_could_change_the_markup_each_mail_is_parsed() -> None:
    refused = [
        '<a href="https://x.example/?u={{ contact.a }}">go</a>',  # the link's address
        '<a href="https://x.example/">{{ contact.a }}</a>',  # its text (derived text part)
        "<p>&{{ contact.a }}</p>",  # `&` + `lt;`
        "<p><{{ contact.a }}</p>",  # `<` + `b>`
        "<!-- {{ contact.a }} -->",
    ]
    for template in refused:
        assert tracking._plan(skeleton_of(template, a="x"), True) is None, template
    kept = [
        "<p>Hello {{ contact.a }} &amp; welcome</p>",
        '<img src="https://cdn.example/{{ contact.a }}.png"><a href="https://x.example/">go</a>',
        "<title>{{ contact.a }}</title><pre>{{ contact.a }}</pre>",
    ]
    for template in kept:
        assert tracking._plan(skeleton_of(template, a="x"), True) is not None, template
    # The author wrote the text part: a value in a link's text changes nothing.
    linked_text = skeleton_of('<a href="https://x.example/">{{ contact.a }}</a>', a="x")
    assert tracking._plan(linked_text, False) is not None


def test_a_value_the_text_part_would_show_differently_is_parsed() -> None:
    template = "<p>Dear {{ contact.a }},</p>"
    plan = tracking._plan(skeleton_of(template, a="x"), True)
    assert plan is not None
    for value in ["", " Ann", "Ann ", "A  nn", "A\nnn", "Ann\xa0"]:
        _, skeleton = render_html(template, {"a": value})
        assert skeleton is not None and not plan.fits(skeleton), repr(value)
        both_ways(template, {"a": value}, None)


def test_markup_values_and_block_filters_have_no_skeleton() -> None:
    assert render_html("{{ contact.a|safe }}", {"a": "<b>x</b>"})[1] is None
    assert render_html("{% filter upper %}{{ contact.a }}{% endfilter %}", {"a": "x"})[1] is None
    assert render_html("\ue000{{ contact.a }}", {"a": "x"})[1] is None
