"""Rendering in the sandbox, plain-text parts, link tracking and token signing."""

from __future__ import annotations

import string

import pytest

from journeys.htmltext import html_to_text
from journeys.templates import RenderError, render
from journeys.tokens import link_token, verify
from journeys.tracking import add_tracking
from tests.helpers import first_format_token

MID = "6f1c3d52-8a4e-4b7f-9c2d-1e5a7b9c0d13"
CONTACT = {"first_name": "Ann", "last_name": None, "plan": "pro", "email": "ann@example.com"}


def test_contact_variables_and_missing_fields() -> None:
    assert render("Hi {{ contact.first_name }}!", CONTACT) == "Hi Ann!"
    assert render("[{{ contact.last_name }}][{{ contact.nickname }}]", CONTACT) == "[][]"
    assert render("{% if contact.plan == 'pro' %}Pro{% else %}Free{% endif %}", CONTACT) == "Pro"


def test_html_parts_escape_values_but_not_the_template() -> None:
    evil = {"first_name": "<script>alert(1)</script>"}
    out = render("<p>Hi {{ contact.first_name }}</p>", evil, html=True)
    assert out == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert render("Hi {{ contact.first_name }}", evil) == "Hi <script>alert(1)</script>"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ contact.__class__.__init__.__globals__ }}",
        "{{ range(10**8) | list | length }}",
        "{{ '{0.__class__.__init__.__globals__}'.format(contact) }}",
    ],
)
def test_sandbox_escapes_are_refused(template: str) -> None:
    with pytest.raises(RenderError):
        render(template, CONTACT)


def test_text_part_from_html() -> None:
    html = '<h1>Hello</h1><p>See <a href="https://x.example/a">our prices</a>&amp; more</p>'
    assert html_to_text(html) == "Hello\nSee our prices (https://x.example/a)& more\n"


def test_text_part_leaves_out_what_a_reader_never_sees() -> None:
    html = (
        "<!doctype html><html><head><meta charset=utf-8><title>Spring offer</title>"
        "<style>p { color: red }</style></head><body><p>Hi Ann</p>"
        "<script>var x = '<p>no</p>';</script><!-- a comment --></body></html>"
    )
    assert html_to_text(html) == "Hi Ann\n"


def test_text_part_lines_spaces_entities_and_links() -> None:
    html = (
        "<div><h2>Spring   offer</h2>\n  <p>Line one<br>line two &amp; more&nbsp;here</p>"
        "<ul>\n<li>First</li>\n<li>Second</li>\n</ul>"
        "<table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>"
        '<p><a href="https://x.example/a">https://x.example/a</a> or <a href=https://x.example/b>'
        "prices</a>, <a href='mailto:ann@example.com'>ann@example.com</a></p>"
        '<p><a href="https://x.example/c"><img src="https://x.example/l.png" alt="Logo"></a>'
        '<img src="https://t.example/t/o/x" width="1" height="1" alt="pixel"></p>'
        "<p>a<br><br>b</p></div>"
    )
    assert html_to_text(html) == (
        "Spring offer\nLine one\nline two & more\xa0here\n- First\n- Second\nA B\nC\n"
        "https://x.example/a or prices (https://x.example/b), ann@example.com\n"
        "Logo (https://x.example/c)\na\n\nb\n"
    )


def test_links_are_tracked_and_pixel_added() -> None:
    html = (
        '<html><body><a href="https://x.example/a?b=1&amp;c=2">A</a>'
        '<a href="mailto:sales@example.com">mail</a><a href="#top">top</a></body></html>'
    )
    out = add_tracking(html, "https://t.example", "s3cret", MID)
    assert "https://x.example/a" not in out
    assert 'href="mailto:sales@example.com"' in out and 'href="#top"' in out
    token = out.split('href="https://t.example/t/c/')[1].split('"')[0]
    assert verify(token, "s3cret") == {"m": MID, "k": "c", "u": "https://x.example/a?b=1&c=2"}
    assert out.index('<img src="https://t.example/t/o/') < out.index("</body>")


def test_tokens_cannot_be_forged_or_altered() -> None:
    token = link_token("c", MID, "s3cret", "https://x.example/é")
    assert verify(token, "s3cret") == {"m": MID, "k": "c", "u": "https://x.example/é"}
    assert verify(link_token("o", MID, "s3cret"), "s3cret") == {"m": MID, "k": "o"}
    assert verify(token, "other") is None
    assert verify(link_token("c", MID, "other", "https://x.example/é"), "s3cret") is None
    for i in range(len(token)):  # any character changed
        other = "B" if token[i] == "A" else "A"
        assert verify(token[:i] + other + token[i + 1 :], "s3cret") is None, i
    assert verify(token[:-1], "s3cret") is None
    assert verify(token[1:], "s3cret") is None
    assert verify(token + "AA", "s3cret") is None
    assert verify(token[:20] + "=" + token[20:], "s3cret") is None  # one spelling only
    # An open token's last character carries spare bits: only the one spelling verifies.
    pixel = link_token("o", MID, "s3cret")
    alphabet = string.ascii_letters + string.digits + "-_"
    assert [c for c in alphabet if verify(pixel[:-1] + c, "s3cret")] == [pixel[-1]]
    assert verify(token, "") is None
    with pytest.raises(ValueError, match="JOURNEYS_SECRET"):
        link_token("o", MID, "")


def test_tokens_are_short_and_the_first_format_still_verifies() -> None:
    # A click link's token was about 145 characters; the same link is 79 now.
    assert len(link_token("c", MID, "s3cret", "https://example.com/offer")) == 79
    assert len(link_token("o", MID, "s3cret")) == 46
    old = first_format_token({"m": MID, "k": "c", "u": "https://x.example/a"}, "s3cret")
    assert len(old) > 140
    assert verify(old, "s3cret") == {"m": MID, "k": "c", "u": "https://x.example/a"}
    body, mac = old.split(".")
    assert verify(old, "other") is None
    assert verify(body[1:] + "." + mac, "s3cret") is None
    assert verify(body + "." + mac[::-1], "s3cret") is None
    assert verify(body + ".", "s3cret") is None
