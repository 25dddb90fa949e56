"""Tracked links and the open pixel, built from signed tokens (`journeys.tokens`).

Links are found with the stdlib's HTML tokenizer (`html.parser`, through
`journeys.templates`), never with a regex over the markup: a regex misses
`href=https://…` without quotes and rewrites "links" inside comments and
scripts. Only the start tag of each tracked `<a>` is replaced, found at the
position the tokenizer reports; every other byte of the HTML goes out as the
template rendered it.

A click in the plain-text part must count like one in the HTML part, so both
parts point at the same click URL for the same target (`tracked_parts`).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from html.parser import HTMLParser

from journeys.htmltext import HTML_SPACE, TextParser, TolerantHTMLParser, start_tag_attributes
from journeys.tokens import sign

_NEWLINE = re.compile("\n")  # the only line break HTMLParser.getpos() counts
# An http(s) URL in plain text runs to the next space, quote or angle bracket
# (`<https://…>` is the RFC 3986 way to delimit one); trailing punctuation is
# trimmed off afterwards.
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?'*"
_CLOSING = {")": "(", "]": "[", "}": "{"}


def open_url(base: str, secret: str, message_id: str) -> str:
    return f"{base}/t/o/{sign({'m': message_id, 'k': 'o'}, secret)}"


def click_url(base: str, secret: str, message_id: str, url: str) -> str:
    return f"{base}/t/c/{sign({'m': message_id, 'k': 'c', 'u': url}, secret)}"


def unsubscribe_url(base: str, secret: str, message_id: str) -> str:
    return f"{base}/t/u/{sign({'m': message_id, 'k': 'u'}, secret)}"


def _is_web(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _anchor(attrs: list[tuple[str, str | None]], href: str) -> str:
    """An `<a>` start tag with `href` as its link, every attribute quoted and escaped."""
    out = ["<a"]
    seen = False
    for name, value in attrs:
        if name == "href":
            if seen:
                continue  # a browser follows the first href; a second only leaks the target
            seen, value = True, href
        out.append(f' {name}="{html_lib.escape(value)}"' if value is not None else f" {name}")
    out.append(">")
    return "".join(out)


class _Splicer:
    """What tracking changes in one HTML document: the start tags of its web links,
    and where `</body>` is. Fed by a tokenizer as it meets them."""

    def __init__(self, html: str, tracked: Callable[[str], str]) -> None:
        self.html = html
        self.tracked = tracked
        # (start, end, replacement) in the source, in source order
        self.edits: list[tuple[int, int, str]] = []
        self.body_end = -1
        self._line_starts: list[int] = []

    def offset(self, parser: HTMLParser) -> int:
        """Where the construct being handled starts (getpos() is line and column)."""
        line, column = parser.getpos()
        if line == 1:
            return column
        if not self._line_starts:
            self._line_starts = [0, *(m.end() for m in _NEWLINE.finditer(self.html))]
        return self._line_starts[line - 1] + column

    def anchor(self, parser: HTMLParser) -> tuple[str, str] | None:
        """(href, tracked url) of the `<a>` being handled; its start tag is replaced if
        it links to the web."""
        source = parser.get_starttag_text() or ""
        attrs = start_tag_attributes(source)
        href = next((value for name, value in attrs if name == "href"), None)
        if href is None:
            return None
        href = href.strip(HTML_SPACE)
        if not _is_web(href):
            return href, href  # mailto:, tel:, #anchor and the like stay as written
        url = self.tracked(href)
        start = self.offset(parser)
        # Always true. Should a future tokenizer report another position, the link
        # stays untracked rather than the mail garbled.
        if self.html.startswith(source, start):
            self.edits.append((start, start + len(source), _anchor(attrs, url)))
        return href, url

    def end_tag(self, parser: HTMLParser, tag: str) -> None:
        if tag == "body" and self.body_end < 0:
            self.body_end = self.offset(parser)

    def comment(self, parser: HTMLParser, data: str) -> None:
        # Outlook's `<!--[if mso]>…<![endif]-->` hides markup from other clients, but
        # Outlook shows it: its links are links.
        if data.startswith("[if") and "<a" in data.lower():
            inner = _track_links(data, self.tracked)
            base = self.offset(parser) + len("<!--")
            self.edits.extend((base + start, base + end, new) for start, end, new in inner.edits)


class _LinkParser(TolerantHTMLParser):
    """Tracks the links of an HTML part, nothing else (the author wrote the text part)."""

    def __init__(self, splicer: _Splicer) -> None:
        super().__init__()  # the same tokenizer settings as _TextLinkParser, the same tags
        self._splicer = splicer

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._splicer.anchor(self)

    def handle_endtag(self, tag: str) -> None:
        self._splicer.end_tag(self, tag)

    def handle_comment(self, data: str) -> None:
        self._splicer.comment(self, data)


class _TextLinkParser(TextParser):
    """Tracks the links of an HTML part and derives the text part, with the tracked
    links, in the same pass."""

    def __init__(self, splicer: _Splicer) -> None:
        super().__init__()
        self._splicer = splicer
        self._target: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Every link is tracked, also one the text part leaves out (in a <title>, say):
        # the HTML part must not depend on what the text part shows.
        if tag == "a":
            self._target = self._splicer.anchor(self)
        super().handle_starttag(tag, attrs)

    def link_target(self) -> tuple[str, str] | None:
        return self._target

    def handle_endtag(self, tag: str) -> None:
        self._splicer.end_tag(self, tag)
        super().handle_endtag(tag)

    def handle_comment(self, data: str) -> None:
        self._splicer.comment(self, data)


def _splice(source: str, edits: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    last = 0
    for start, end, new in sorted(edits, key=lambda edit: edit[0]):
        out += (source[last:start], new)
        last = end
    out.append(source[last:])
    return "".join(out)


def _track_links(html: str, tracked: Callable[[str], str]) -> _Splicer:
    splicer = _Splicer(html, tracked)
    parser = _LinkParser(splicer)
    parser.feed(html)
    parser.close()
    return splicer


def rewrite_text_links(text: str, tracked: Callable[[str], str]) -> str:
    """Replace every http(s) URL in a plain-text part by `tracked(url)`.

    Punctuation after a URL (`see https://x.example/a.`) is not part of it, nor is a
    closing bracket that has no opening one in the URL (`(https://x.example/a)`).
    """

    def replace(m: re.Match[str]) -> str:
        url = m.group(0)
        end = len(url)
        while True:
            last = url[end - 1]
            if last in _TRAILING or (
                last in _CLOSING and url.count(last, 0, end) > url.count(_CLOSING[last], 0, end)
            ):
                end -= 1
            else:
                break
        if url.find("://") + 3 >= end:
            return url  # `https://` and nothing after it
        return tracked(url[:end]) + url[end:]

    return _TEXT_URL.sub(replace, text)


def _pixel(base: str, secret: str, message_id: str) -> str:
    return (
        f'<img src="{html_lib.escape(open_url(base, secret, message_id))}" width="1" '
        'height="1" alt="" style="display:none">'
    )


def tracked_parts(
    html: str, text: str | None, base: str, secret: str, message_id: str
) -> tuple[str, str]:
    """(HTML part, plain-text part) of a mail as it is sent: links tracked, open pixel added.

    Without an author's `text`, the text part is derived from the HTML in the same
    pass, with the tracked links in it. With one, each http(s) URL in it becomes
    the same click URL the HTML uses for that target, so a click in either part
    records a click on the same URL. The pixel goes before `</body>`, or at the end.
    """
    cache: dict[str, str] = {}

    def tracked(url: str) -> str:
        # A target linked twice (or in both parts) is signed once.
        found = cache.get(url)
        if found is None:
            found = cache[url] = click_url(base, secret, message_id, url)
        return found

    if text is None:
        splicer = _Splicer(html, tracked)
        parser = _TextLinkParser(splicer)
        parser.feed(html)
        parser.close()
        text = parser.text()
    else:
        splicer = _track_links(html, tracked)
        text = rewrite_text_links(text, tracked)
    at = splicer.body_end if splicer.body_end >= 0 else len(html)
    return _splice(html, [*splicer.edits, (at, at, _pixel(base, secret, message_id))]), text


def add_tracking(html: str, base: str, secret: str, message_id: str) -> str:
    """The HTML part alone, as `tracked_parts` makes it."""
    return tracked_parts(html, "", base, secret, message_id)[0]
