"""Tracked links and the open pixel, built from signed tokens (`journeys.tokens`)."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable

from journeys.tokens import sign

_HREF = re.compile(r"(<a\b[^>]*?\bhref\s*=\s*)([\"'])(.*?)\2", re.IGNORECASE | re.DOTALL)


def open_url(base: str, secret: str, message_id: str) -> str:
    return f"{base}/t/o/{sign({'m': message_id, 'k': 'o'}, secret)}"


def click_url(base: str, secret: str, message_id: str, url: str) -> str:
    return f"{base}/t/c/{sign({'m': message_id, 'k': 'c', 'u': url}, secret)}"


def unsubscribe_url(base: str, secret: str, message_id: str) -> str:
    return f"{base}/t/u/{sign({'m': message_id, 'k': 'u'}, secret)}"


def rewrite_links(html: str, tracked: Callable[[str], str]) -> str:
    """Point every http(s) link at its click-tracking URL; other links stay."""

    def replace(m: re.Match[str]) -> str:
        url = html_lib.unescape(m.group(3)).strip()
        if not url.lower().startswith(("http://", "https://")):
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{html_lib.escape(tracked(url))}{m.group(2)}"

    return _HREF.sub(replace, html)


def add_tracking(html: str, base: str, secret: str, message_id: str) -> str:
    body = rewrite_links(html, lambda url: click_url(base, secret, message_id, url))
    pixel = (
        f'<img src="{html_lib.escape(open_url(base, secret, message_id))}" width="1" '
        'height="1" alt="" style="display:none">'
    )
    close = re.search(r"</body\s*>", body, re.IGNORECASE)
    if close:
        return body[: close.start()] + pixel + body[close.start() :]
    return body + pixel
