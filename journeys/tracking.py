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

import functools
import html as html_lib
import re
import uuid
from collections.abc import Callable
from html.parser import HTMLParser

from journeys.htmltext import (
    HTML_SPACE,
    TextParser,
    TolerantHTMLParser,
    quoted_value_spans,
    start_tag_attributes,
)
from journeys.templates import VALUE_MARK, Skeleton
from journeys.tokens import link_token

_NEWLINE = re.compile("\n")  # the only line break HTMLParser.getpos() counts
# An http(s) URL in plain text runs to the next space, quote or angle bracket
# (`<https://…>` is the RFC 3986 way to delimit one); trailing punctuation is
# trimmed off afterwards.
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?'*"
_CLOSING = {")": "(", "]": "[", "}": "{"}


def open_url(base: str, secret: str, message_id: str | uuid.UUID) -> str:
    return f"{base}/t/o/{link_token('o', message_id, secret)}"


def click_url(base: str, secret: str, message_id: str | uuid.UUID, url: str) -> str:
    return f"{base}/t/c/{link_token('c', message_id, secret, url)}"


def unsubscribe_url(base: str, secret: str, message_id: str | uuid.UUID) -> str:
    return f"{base}/t/u/{link_token('u', message_id, secret)}"


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

    def spliced(self, pixel: str) -> str:
        """The document with its links tracked and `pixel` before `</body>` (or at the end)."""
        at = self.body_end if self.body_end >= 0 else len(self.html)
        return _splice(self.html, [*self.edits, (at, at, pixel)])

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


def _pixel(base: str, secret: str, message_id: str | uuid.UUID) -> str:
    return (
        f'<img src="{html_lib.escape(open_url(base, secret, message_id))}" width="1" '
        'height="1" alt="" style="display:none">'
    )


def tracked_parts(
    html: str,
    text: str | None,
    base: str,
    secret: str,
    message_id: str | uuid.UUID,
    *,
    skeleton: Skeleton | None = None,
) -> tuple[str, str]:
    """(HTML part, plain-text part) of a mail as it is sent: links tracked, open pixel added.

    Without an author's `text`, the text part is derived from the HTML in the same
    pass, with the tracked links in it. With one, each http(s) URL in it becomes
    the same click URL the HTML uses for that target, so a click in either part
    records a click on the same URL. The pixel goes before `</body>`, or at the end.

    With the rendering's `skeleton` (`journeys.templates.render_html`) the HTML is
    parsed once per skeleton instead of once per mail, when that gives the same parts
    (`_plan`); the parse was most of the CPU of a bulk send.
    """
    cache: dict[str, str] = {}
    if isinstance(message_id, str):
        message_id = uuid.UUID(message_id)  # once, not once per link

    def tracked(url: str) -> str:
        # A target linked twice (or in both parts) is signed once.
        found = cache.get(url)
        if found is None:
            found = cache[url] = click_url(base, secret, message_id, url)
        return found

    if skeleton is not None:
        plan = _plan(skeleton.html, text is None)
        if plan is not None and plan.fits(skeleton):
            urls = [tracked(href) for href in plan.links]
            pixel = _pixel(base, secret, message_id)
            out_html = plan.fill_html(skeleton, urls, pixel)
            if text is None:
                return out_html, plan.fill_text(skeleton, urls)
            return out_html, rewrite_text_links(text, tracked)

    if text is None:
        splicer = _Splicer(html, tracked)
        parser = _TextLinkParser(splicer)
        parser.feed(html)
        parser.close()
        text = parser.text()
    else:
        splicer = _track_links(html, tracked)
        text = rewrite_text_links(text, tracked)
    return splicer.spliced(_pixel(base, secret, message_id)), text


# --- parsing once per skeleton --------------------------------------------------------------
#
# A skeleton is the rendering with each value replaced by a marker (U+E000 + i), and the
# rendering is the skeleton with each marker replaced by its value, HTML-escaped. An
# escaped value has no `<`, `>` or quotes, and its `&` start complete references. Where
# a value sits in text, or inside a quoted attribute value, it cannot start or end a
# tag, a comment or an attribute: the rendering has the skeleton's markup, and tracking
# the skeleton, with markers for the click URLs and the pixel, gives every mail's parts
# once the markers are filled in. A value anywhere else could change what the markup
# means, so the plan is refused and each mail is parsed (`_refused_before`,
# `_PlanChecks`):
# - in a start tag outside a quoted attribute value, or in a start tag not in its
#   plainest form (`<script {{ v }}>` with `/` is a tag that ends itself,
#   `title={{ v }}"…` with a space opens a quoted value, `a==" b="{{ v }}"` pairs its
#   quotes otherwise with `x=`), in an `<a>` start tag at all (the link's address), in
#   a tag name, an end tag, a comment,
#   a declaration, a marked section or a processing instruction;
# - in the content of `<script>` or `<style>` (`</style` + `>` ends it);
# - right after `<`, `</`, `<!-`, `<?` or the start of a tag name, or an unfinished
#   reference (`&l` + `t;`, `&#` and any digits);
# - in markup left unfinished at the end (an open comment that a value would close);
# - in a link's text, when the text part is derived: a link whose text is its address
#   is shown once;
# - in an image's attributes inside such a link (its alt text is the link's text).
# And a value that reaches the text part must look the same there as its marker to the
# text's whitespace rules: not empty, no white space at its ends, no line breaks, tabs
# or double spaces (`_Plan.fits`, per mail). The probe rendering runs in an immutable
# sandbox, so that a template that changes its variables does so once.

LINK_MARK = 0xF000  # the k-th tracked link's click URL
MAX_LINKS = 0x800
PIXEL_MARK = "\uf8ff"
_SLOTS = re.compile("([\ue000-\uf7ff\uf8ff])")
_VALUE = re.compile("[\ue000-\uefff]")
_ANY_SLOT = re.compile("[\ue000-\uf8ff]")
# Right before a value: `<`, `</`, `<!-`, `<?`, a tag name begun, or a named reference.
_OPEN_BEFORE = re.compile(r"(?:<[!/?]?(?:[A-Za-z][^\t\n\r\f />\x00<>]*|-)?|&[^\t\n\f <&;]{0,32})$")
_HEX = frozenset("0123456789abcdefABCDEF")
_TEXT_BREAKERS = re.compile("[\t\n\r\f]|  ")


def _refused_before(skeleton: str, at: int) -> bool:
    """Whether what comes before the marker at `at` lets a value change the markup."""
    if _OPEN_BEFORE.search(skeleton, max(0, at - 34), at):
        return True
    start = at  # a numeric reference has any number of digits
    while start > 0 and skeleton[start - 1] in _HEX:
        start -= 1
    if skeleton.endswith("&#", 0, start) or skeleton[max(0, start - 3) : start] in ("&#x", "&#X"):
        return True
    # Inside an end tag, a comment, a declaration or a processing instruction.
    opened = skeleton.rfind("<", 0, at)
    return opened > skeleton.rfind(">", 0, at) and skeleton[opened + 1 : opened + 2] in "/!?"


class _PlanChecks(HTMLParser):
    """Refuses a plan where a value could change the markup's meaning (see above)."""

    derive_text = False
    unusable = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        source = self.get_starttag_text() or ""
        if _VALUE.search(source) and (
            tag == "a"
            or _VALUE.search(tag)
            or (tag == "img" and self.derive_text and getattr(self, "_link", None))
            or not _only_in(source, quoted_value_spans(source) or [])
        ):
            self.unusable = True
        super().handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if _VALUE.search(tag):
            self.unusable = True
        super().handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if _VALUE.search(data) and (
            self.cdata_elem is not None  # in <script> or <style>
            or (self.derive_text and getattr(self, "_link", None))
        ):
            self.unusable = True
        super().handle_data(data)

    def handle_comment(self, data: str) -> None:
        self._refuse_in(data)
        super().handle_comment(data)

    def handle_decl(self, decl: str) -> None:
        self._refuse_in(decl)
        super().handle_decl(decl)

    def unknown_decl(self, data: str) -> None:
        self._refuse_in(data)
        super().unknown_decl(data)

    def handle_pi(self, data: str) -> None:
        self._refuse_in(data)
        super().handle_pi(data)

    def _refuse_in(self, data: str) -> None:
        if _VALUE.search(data):
            self.unusable = True


def _only_in(source: str, spans: list[tuple[int, int]]) -> bool:
    """Whether every marker of `source` lies within one of `spans`."""
    return all(
        any(start <= m.start() < end for start, end in spans) for m in _VALUE.finditer(source)
    )


class _PlanTextParser(_PlanChecks, _TextLinkParser):
    derive_text = True


class _PlanLinkParser(_PlanChecks, _LinkParser):
    pass


class _Plan:
    """A skeleton tracked: its parts as literal pieces and markers to fill in."""

    def __init__(self, html: list[str], text: list[str] | None, links: list[str]) -> None:
        self.html, self.text, self.links = html, text, links
        # The values the text part shows, whose white space matters there.
        self.shown = sorted({ord(m) - VALUE_MARK for m in (text or [])[1::2] if _VALUE.match(m)})

    def fits(self, skeleton: Skeleton) -> bool:
        for i in self.shown:
            value = skeleton.values[i]
            if not value or value[0].isspace() or value[-1].isspace():
                return False
            if _TEXT_BREAKERS.search(value):
                return False
        return True

    def fill_html(self, skeleton: Skeleton, urls: list[str], pixel: str) -> str:
        escaped = [html_lib.escape(url) for url in urls]
        return _fill(self.html, skeleton.escaped, escaped, pixel)

    def fill_text(self, skeleton: Skeleton, urls: list[str]) -> str:
        assert self.text is not None
        return _fill(self.text, skeleton.values, urls, "")


def _fill(pieces: list[str], values: tuple[str, ...], urls: list[str], pixel: str) -> str:
    out = pieces[:]
    for j in range(1, len(out), 2):
        mark = ord(out[j])
        if mark < LINK_MARK:
            out[j] = values[mark - VALUE_MARK]
        elif mark < LINK_MARK + MAX_LINKS:
            out[j] = urls[mark - LINK_MARK]
        else:
            out[j] = pixel
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _plan(skeleton: str, derive_text: bool) -> _Plan | None:
    """The skeleton tracked with markers, or None when its mails must each be parsed."""
    if "\x00" in skeleton:
        return None  # html.parser reads a tag name ending in NUL as text (never sent)
    for m in _VALUE.finditer(skeleton):
        if _refused_before(skeleton, m.start()):
            return None
    if len(_ANY_SLOT.findall(html_lib.unescape(skeleton))) != len(_VALUE.findall(skeleton)):
        return None  # private-use characters of the template's own (`&#xf09a;`, an icon)
    links: dict[str, str] = {}  # each target's marker, in the order first linked
    splicer = _Splicer(
        skeleton, lambda url: links.setdefault(url, chr(LINK_MARK + min(len(links), MAX_LINKS)))
    )
    parser: _PlanChecks = _PlanTextParser(splicer) if derive_text else _PlanLinkParser(splicer)
    parser.feed(skeleton)
    if _VALUE.search(parser.rawdata):
        return None  # markup left unfinished at the end holds a value
    parser.close()
    if parser.unusable or len(links) >= MAX_LINKS:
        return None
    text = _SLOTS.split(parser.text()) if isinstance(parser, _PlanTextParser) else None
    return _Plan(_SLOTS.split(splicer.spliced(PIXEL_MARK)), text, list(links))


def add_tracking(html: str, base: str, secret: str, message_id: str | uuid.UUID) -> str:
    """The HTML part alone, as `tracked_parts` makes it."""
    return tracked_parts(html, "", base, secret, message_id)[0]
