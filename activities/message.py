"""Composing the MIME message of an e-mail.

The compat32 MIME classes are used on purpose: the modern `EmailMessage` API
parses every header it is given and re-folds it on output, and that was most
of the CPU of the whole send path (profiled: about 60%). aiosmtplib also writes
an `EmailMessage` with the SMTP policy, which turned a long `List-Unsubscribe`
URL into an RFC 2047 encoded word that mail clients do not read as a URL.
compat32 folds only at spaces: a long URL moves to a continuation line, which
unfolds to the same value.
"""

from __future__ import annotations

from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr


def _header(name: str, value: str) -> str:
    """Non-ASCII text as RFC 2047 encoded words; ASCII as it is."""
    return value if value.isascii() else Header(value, "utf-8", header_name=name).encode()


def _address(value: str) -> str:
    """`Name <addr>` with only the name encoded when it is not ASCII."""
    name, addr = parseaddr(value)
    return formataddr((name, addr), charset="utf-8") if addr else value


def compose(
    *, sender: str, to: str, subject: str, text: str, html: str, headers: dict[str, str]
) -> Message:
    """A multipart/alternative message with a plain-text and an HTML part."""
    msg = MIMEMultipart("alternative")
    msg["From"] = _address(sender)
    msg["To"] = to
    msg["Subject"] = _header("Subject", subject)
    msg["Date"] = formatdate(localtime=False)
    for name, value in headers.items():
        msg[name] = value
    msg.attach(MIMEText(text, "plain", "utf-8"))
    msg.attach(MIMEText(html, "html", "utf-8"))
    return msg
