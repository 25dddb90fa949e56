"""Tracked links in both parts of a mail, and the open pixel.

`journeys.tracking` is imported as a module so that each test fails on its own
when a function it needs is missing, not the whole file at import.
"""

from __future__ import annotations

import re

import pytest

from journeys import tracking
from journeys.tokens import verify

BASE, SECRET, MID = "https://t.example", "s3cret", "6f1c3d52-8a4e-4b7f-9c2d-1e5a7b9c0d13"
PIXEL = (
    f'<img src="{tracking.open_url(BASE, SECRET, MID)}" width="1" height="1" alt="" '
    'style="display:none">'
)


def hrefs(html: str) -> list[str]:
    # What tests/helpers.links_in reads: double-quoted hrefs of <a> tags.
    return re.findall(r'<a\b[^>]*href="([^"]+)"', html)


def target(url: str) -> str:
    """The URL a click on a tracked link records."""
    assert url.startswith(f"{BASE}/t/c/"), url
    payload = verify(url.removeprefix(f"{BASE}/t/c/"), SECRET)
    assert payload is not None and payload["m"] == MID and payload["k"] == "c"
    return str(payload["u"])


def test_derived_text_part_has_the_tracked_links() -> None:
    html = (
        "<html><head><title>Offer</title></head><body>"
        '<p>See <a href="https://x.example/a">the offer</a>.</p></body></html>'
    )
    out_html, text = tracking.tracked_parts(html, None, BASE, SECRET, MID)
    [link] = hrefs(out_html)
    assert target(link) == "https://x.example/a"
    assert text == f"See the offer ({link}).\n"


def test_author_text_part_urls_become_the_same_click_urls() -> None:
    html = '<p><a href="https://x.example/a">A</a></p>'
    text = (
        "Hi Ann,\nsee https://x.example/a. Or (https://x.example/b?c=1&d=2), "
        "or https://en.wikipedia.org/wiki/Foo_(bar); mail sales@example.com.\n"
    )
    out_html, out_text = tracking.tracked_parts(html, text, BASE, SECRET, MID)
    [link] = hrefs(out_html)
    urls = re.findall(r"https://t\.example/t/c/[\w-]+", out_text)
    assert [target(url) for url in urls] == [
        "https://x.example/a",
        "https://x.example/b?c=1&d=2",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
    ]
    assert urls[0] == link  # a click in either part records the same target
    assert out_text == (
        f"Hi Ann,\nsee {urls[0]}. Or ({urls[1]}), or {urls[2]}; mail sales@example.com.\n"
    )


@pytest.mark.parametrize(
    "tag",
    [
        "<a href=https://x.example/a?b=1>",
        "<a href='https://x.example/a?b=1'>",
        '<A HREF="https://x.example/a?b=1">',
        "<a\n  class=btn target=_blank\n  href = https://x.example/a?b=1 title='Say \"hi\"' download>",
    ],
)
def test_every_way_of_writing_an_href_is_tracked(tag: str) -> None:
    before, after = "<p>Hello</p>\n<p>", "go</a> &amp; back</p>\n<p>Bye</p>\n"
    out = tracking.add_tracking(before + tag + after, BASE, SECRET, MID)
    [link] = hrefs(out)
    assert target(link) == "https://x.example/a?b=1"
    # Only the start tag changes: the rest goes out byte for byte.
    assert out.startswith(before + "<a ")
    assert out.endswith(f">{after}{PIXEL}")
    if "class" in tag:
        new_tag = out[len(before) : out.index(">", len(before)) + 1]
        assert new_tag == (
            f'<a class="btn" target="_blank" href="{link}" title="Say &quot;hi&quot;" download>'
        )


def test_other_links_and_non_links_stay_byte_for_byte() -> None:
    html = (
        '<body><a href="mailto:sales@example.com">mail</a> <a href=tel:+3120>call</a> '
        "<a href='#top'>top</a> <a name=top>anchor</a> <a>bare</a>"
        '<!-- <a href="https://x.example/c">old</a> -->'
        "<script>var s = '<a href=\"https://x.example/d\">';</script></body>"
    )
    out = tracking.add_tracking(html, BASE, SECRET, MID)
    assert out == html.replace("</body>", PIXEL + "</body>")


def test_href_is_decoded_as_a_browser_decodes_it() -> None:
    # `&region` is not `&reg;ion` inside an attribute, and `&amp;` is `&`.
    html = '<a href="https://x.example/?lang=en&region=eu&amp;page=2&#x26;q=1">x</a>'
    [link] = hrefs(tracking.add_tracking(html, BASE, SECRET, MID))
    assert target(link) == "https://x.example/?lang=en&region=eu&page=2&q=1"


def test_links_for_outlook_only_are_tracked_too() -> None:
    html = '<!--[if mso]><a href="https://x.example/o">Outlook</a><![endif]--><p>x</p>'
    out = tracking.add_tracking(html, BASE, SECRET, MID)
    [link] = hrefs(out)
    assert target(link) == "https://x.example/o"
    assert out == html.replace("https://x.example/o", link) + PIXEL


def test_pixel_goes_before_the_body_end_tag_or_at_the_end() -> None:
    html = "<html><body><!-- </body> --><p>Hi</p></BODY >\n</html>"
    out = tracking.add_tracking(html, BASE, SECRET, MID)
    assert out == html.replace("</BODY >", PIXEL + "</BODY >")
    assert tracking.add_tracking("<p>Hi</p>", BASE, SECRET, MID) == "<p>Hi</p>" + PIXEL


def test_markup_the_tokenizer_trips_over_still_sends() -> None:
    # Python 3.11's HTMLParser raises AssertionError on an unknown `<![…]>`.
    html = '<p>a<![foo]>b <a href="https://x.example/a">x</a></p>'
    out_html, text = tracking.tracked_parts(html, None, BASE, SECRET, MID)
    [link] = hrefs(out_html)
    assert text == f"ab x ({link})\n"


@pytest.mark.parametrize(
    "html",
    [
        '<template><a href="https://x.example/t">t</a></template><p>x</p>',
        '<head><title>a <a href="https://x.example/t">t</a></title></head>',
    ],
)
def test_html_part_is_the_same_whoever_wrote_the_text_part(html: str) -> None:
    # Links the derived text part leaves out are still tracked in the HTML part.
    derived, _ = tracking.tracked_parts(html, None, BASE, SECRET, MID)
    authored, _ = tracking.tracked_parts(html, "x", BASE, SECRET, MID)
    assert derived == authored
    assert [target(link) for link in hrefs(derived)] == ["https://x.example/t"]
