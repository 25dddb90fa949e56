"""Reading HTML mail as a browser would: its text, and its attributes decoded.

The plain-text part is derived with the stdlib's HTML tokenizer (`html.parser`),
not with regexes over the markup: a regex cannot tell a tag from text inside
`<title>`, `<style>`, `<script>` or a comment, nor an unquoted attribute from
the next one. The tokenizer is pure Python (about 0.3 ms for a 3 kB newsletter,
measured); no faster parser in a maintained package leaves the source bytes
alone, which link tracking (`journeys.tracking`) needs.
"""

from __future__ import annotations

import html as html_lib
import re
from html.entities import html5
from html.parser import HTMLParser

# Elements whose content a reader never sees.
_HIDDEN = frozenset({"head", "title", "style", "script", "template"})
# Elements that start and end a line (CSS `display: block` and friends by default).
_BLOCKS = frozenset(
    """address article aside blockquote caption center dd details div dl dt fieldset
    figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr legend li main nav ol p pre
    section summary table tbody tfoot thead tr ul""".split()
)
_SPACES = re.compile(r"[ \t\n\r\f]+")  # what HTML collapses; not U+00A0, which it keeps
_BLANK_LINES = re.compile(r"\n{3,}")
HTML_SPACE = " \t\n\r\f"  # what HTML counts as white space
# One attribute of a start tag whose extent the tokenizer found: name, then an optional
# value in double, single or no quotes (the attribute grammar of the HTML spec).
_ATTRIBUTE = re.compile(
    r"""([^\s/>][^\s/=>]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>"'][^\s>]*|(?=\s|$)))?"""
)
_TAG_NAME = re.compile(r"<[^\s/>]+")
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _attribute_ref(m: re.Match[str]) -> str:
    ref = m.group(1)
    if ref[0] == "#" or ref in html5:
        return html_lib.unescape(m.group(0))
    for end in range(len(ref) - 1, 1, -1):
        if ref[:end] in html5:
            # In an attribute a legacy entity without ";" followed by "=" or a letter
            # or digit stays as written: `?a=1&region=eu` keeps its `&region`.
            if ref[end] == "=" or ref[end].isalnum():
                return m.group(0)
            return html5[ref[:end]] + ref[end:]
    return m.group(0)


def unescape_attribute(value: str) -> str:
    """An attribute value's character references decoded as a browser does.

    `html.unescape` (which HTMLParser applies to attribute values) decodes
    `&region=` in `?lang=en&region=eu` to `®ion=`; a browser keeps it, so a
    link would point elsewhere than the author's browser showed.
    """
    return _CHARREF.sub(_attribute_ref, value) if "&" in value else value


def start_tag_attributes(start_tag: str) -> list[tuple[str, str | None]]:
    """(lower-case name, decoded value or None) of each attribute of a start tag's source.

    `start_tag` is `HTMLParser.get_starttag_text()`: the tokenizer has found where
    the tag ends; this splits its attributes again only to decode their values as a
    browser does (see `unescape_attribute`), which HTMLParser's own list does not.
    """
    name = _TAG_NAME.match(start_tag)
    out: list[tuple[str, str | None]] = []
    if name is None:
        return out
    for m in _ATTRIBUTE.finditer(start_tag, name.end(), len(start_tag) - 1):
        raw = m.group(2)
        if raw is None:
            out.append((m.group(1).lower(), None))
            continue
        if raw[:1] in ("'", '"'):
            raw = raw[1:-1]
        out.append((m.group(1).lower(), unescape_attribute(raw)))
    return out


# A start tag in its plainest form: a name, then attributes separated by white space,
# each with a quoted value or none. Every HTML tokenizer reads such a tag the same way;
# `html.parser` tolerates much more (`a==`, names running into quotes), and there two
# readings can pair the quotes differently.
_PLAIN_START_TAG = re.compile(
    r"""<[A-Za-z][A-Za-z0-9-]*"""
    r"""(?:[ \t\n\r\f]+[A-Za-z_:][-A-Za-z0-9_:.]*"""
    r"""(?:[ \t\n\r\f]*=[ \t\n\r\f]*(?:"[^"]*"|'[^']*'))?)*"""
    r"""[ \t\n\r\f]*/?>"""
)
_PLAIN_VALUE = re.compile(r"""=[ \t\n\r\f]*("[^"]*"|'[^']*')""")


def quoted_value_spans(start_tag: str) -> list[tuple[int, int]] | None:
    """Where the quoted attribute values of a start tag's source are, quotes excluded;
    None when the tag is not in its plainest form (see `_PLAIN_START_TAG`)."""
    if not _PLAIN_START_TAG.fullmatch(start_tag):
        return None
    return [(m.start(1) + 1, m.end(1) - 1) for m in _PLAIN_VALUE.finditer(start_tag)]


class TolerantHTMLParser(HTMLParser):
    """The stdlib tokenizer, with text references decoded, that never raises on bad markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def parse_html_declaration(self, i: int) -> int:
        # Python 3.11's tokenizer raises AssertionError on `<![foo]>` (and other `<![`
        # it does not know); a browser reads those as a comment up to the next `>`.
        # A mail with one must not fail to send.
        position = self.lineno, self.offset  # the failed attempt moves them
        try:
            return super().parse_html_declaration(i)
        except AssertionError:
            self.lineno, self.offset = position
            end = self.rawdata.find(">", i + 2)
            if end < 0:
                return -1
            self.handle_comment(self.rawdata[i + 2 : end])
            return end + 1


class TextParser(TolerantHTMLParser):
    """Collects what a browser would show of an HTML document, as lines of text.

    Block elements end lines, `<br>` always does (so two make an empty line),
    whitespace collapses as in a browser, links become `text (url)`. Feed it,
    close it, then call `text()`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._line: list[str] = []  # pieces of the line being built
        self._breaks = 0  # lines ended so far; tells whether a link stayed on one line
        self._space = True  # at a line start or after a space: leading spaces go
        self._hidden = 0
        self._pre = 0
        self._lists: list[int] = []  # per open list: next number, or 0 for bullets
        # (shown url, the href as written, line breaks and piece index at its start)
        self._link: tuple[str, str, int, int] | None = None

    def link_target(self) -> tuple[str, str] | None:
        """(href as written, url to show) of the `<a>` start tag being handled."""
        for name, value in start_tag_attributes(self.get_starttag_text() or ""):
            if name == "href":
                href = (value or "").strip(HTML_SPACE)
                return href, href
        return None

    def text(self) -> str:
        self._end_link()
        self._soft_break()
        text = _BLANK_LINES.sub("\n\n", "\n".join(self._lines).strip("\n"))
        return text + "\n"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
            return
        if tag == "body":
            self._hidden = 0  # an unclosed <head> or <title> ends where the body starts
        if self._hidden:
            return
        if tag in _BLOCKS:
            self._soft_break()
            if tag == "li":
                self._bullet()
            elif tag == "ol":
                self._lists.append(1)
            elif tag == "ul":
                self._lists.append(0)
            elif tag == "pre":
                self._pre += 1
        elif tag == "br":
            self._hard_break()
        elif tag == "a":
            self._end_link()  # links do not nest: a new one ends the open one
            target = self.link_target()
            if target is not None:
                self._link = (target[1], target[0], self._breaks, len(self._line))
        elif tag in ("td", "th"):
            self.handle_data(" ")
        elif tag == "img" and self._link is not None:
            # An image is a link's text when it is the link (a button, a logo).
            found = dict(attrs)
            style = (found.get("style") or "").replace(" ", "").lower()
            pixel = found.get("width") in ("0", "1") or found.get("height") in ("0", "1")
            if found.get("alt") and not pixel and "display:none" not in style:
                self.handle_data(found["alt"] or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # A browser ignores `/>` on elements that are not void: `<a href=x/>` opens a link.
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
            return
        if self._hidden:
            return
        if tag == "a":
            self._end_link()
        elif tag in _BLOCKS:
            self._soft_break()
            if tag in ("ol", "ul") and self._lists:
                self._lists.pop()
            elif tag == "pre" and self._pre:
                self._pre -= 1
        elif tag == "br":
            self._hard_break()  # browsers read a stray </br> as <br>

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            first, *rest = data.split("\n")
            self._line.append(first)
            for line in rest:
                self._hard_break()
                self._line.append(line)
            self._space = False
            return
        if not data.strip(HTML_SPACE):  # the line breaks and indents between tags
            if not self._space:
                self._line.append(" ")
                self._space = True
            return
        data = _SPACES.sub(" ", data)
        if self._space and data[:1] == " ":
            data = data[1:]
        if data:
            self._line.append(data)
            self._space = data[-1] == " "

    def _bullet(self) -> None:
        if self._lists and self._lists[-1]:
            self._line.append(f"{self._lists[-1]}. ")
            self._lists[-1] += 1
        else:
            self._line.append("- ")

    def _soft_break(self) -> None:
        """End the line if it has text: nested blocks make one line break, not several."""
        if self._line:
            line = "".join(self._line)
            if line.strip():
                self._lines.append(line.rstrip() if self._pre else line.strip())
            self._line = []
            self._breaks += 1
        self._space = True

    def _hard_break(self) -> None:
        line = "".join(self._line)
        self._lines.append(line.rstrip() if self._pre else line.strip())
        self._line = []
        self._breaks += 1
        self._space = True

    def _end_link(self) -> None:
        if self._link is None:
            return
        url, href, breaks, start = self._link
        self._link = None
        scheme = href.partition(":")[0].lower()
        if not url or href.startswith("#") or scheme == "javascript":
            return  # a jump within the message or a script: only the text means anything
        if breaks != self._breaks:  # the link's text spans lines: the address goes after it
            if "".join(self._line).strip() or not self._lines:
                self._line.append(f"({url}) " if self._space else f" ({url})")
                self._space = self._line[-1][-1] == " "
            else:  # a block closed the link's last line: the address ends that line
                self._lines[-1] = f"{self._lines[-1]} ({url})".lstrip()
            return
        shown = "".join(self._line[start:])
        words = shown.strip()
        if scheme in ("mailto", "tel") and words.lower() == href[len(scheme) + 1 :].lower():
            return  # `ann@example.com`, not `ann@example.com (mailto:ann@example.com)`
        if words and words != href and words != url:
            self._line.append(f"({url}) " if self._space else f" ({url})")
            self._space = self._line[-1][-1] == " "
            return
        # No text (an image without alt) or the address itself: the address, once.
        tail = " " if words and shown[-1] == " " else ""
        self._line[start:] = [(" " if shown[:1] == " " else "") + url + tail]
        self._space = bool(tail)


def html_to_text(html: str) -> str:
    """A readable plain-text part for mail clients that do not show HTML."""
    parser = TextParser()
    parser.feed(html)
    parser.close()
    return parser.text()
