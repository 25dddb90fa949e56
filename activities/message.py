"""Composing an e-mail as the bytes that go over SMTP.

Written out directly rather than through the `email` package: building an
`EmailMessage` and flattening it re-parses and re-folds every header, and that
was most of the CPU of the whole send path (profiled: about 60%; the compat32
classes still spent 1.5 ms a message in header folding). A journey mail has
one fixed shape (multipart/alternative, a text and an HTML part), so its
writer is short: headers, then two quoted-printable parts.

Header values come partly from contact data, so line breaks in them are
replaced: a name with a CR LF in it must not add headers of its own.

Addresses go out with their domain as IDNA (an A-label, `xn--…`) when it is written
in Unicode, in the envelope and the headers alike; a local part that is not ASCII
(`jörg@…`) stays UTF-8 (RFC 6531 and 6532), and the mail says it needs SMTPUTF8.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formataddr, parseaddr

import idna


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMail:
    envelope_from: str
    recipients: list[str]
    data: bytes
    # An address (the envelope's, the headers') has a non-ASCII local part: the relay
    # must offer SMTPUTF8 (RFC 6531).
    smtputf8: bool = False


def _one_line(value: str) -> str:
    return " ".join(value.splitlines())


def _header(name: str, value: str) -> str:
    """Non-ASCII text as RFC 2047 encoded words (folded), ASCII as it is."""
    value = _one_line(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def mailbox(address: str) -> str:
    """`address` as it goes out: its domain as IDNA (an A-label) when it is written in
    Unicode, its local part as it is. ValueError when the domain is not a valid
    internationalised domain name (the error does not quote the address: it becomes the
    message's reason, and reasons go to logs)."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("not an e-mail address")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise ValueError(
                "the address's domain is not a valid internationalised domain name (IDNA)"
            ) from None
    return f"{local}@{domain}"


@functools.lru_cache(maxsize=64)  # the sender: the same for a whole run (6% of a bulk send's CPU)
def _address(value: str) -> tuple[str, str]:
    """(`Name <addr>` with only the name encoded when it is not ASCII, addr), the address
    as `mailbox` sends it."""
    name, addr = parseaddr(_one_line(value))
    if not addr:
        raise ValueError(f"not an address: {value!r}")
    addr = mailbox(addr)
    if addr.isascii():
        return formataddr((name, addr), charset="utf-8"), addr
    if not name:
        return addr, addr
    # formataddr refuses a non-ASCII address (RFC 6532 writes it as it is): the name as
    # formataddr writes it, then the address.
    return formataddr((name, "_@_"), charset="utf-8").replace("<_@_>", f"<{addr}>"), addr


@functools.lru_cache(maxsize=64)
def sending_domain(sender: str) -> str:
    """The domain of `sender`'s address (JOURNEYS_MAIL_FROM's), as it goes out: what the
    Message-IDs and List-Ids of its mails name."""
    return _address(sender)[1].rpartition("@")[2]


def list_id(name: str, domain: str) -> str:
    """A `List-Id` (RFC 2919) for the mails of `name` (a journey's or a recurring send's
    key) sent from `domain`."""
    return f"<{re.sub(r'[^A-Za-z0-9_-]', '-', name)}.{domain}>"


def _part(subtype: str, content: str) -> bytes:
    # Quoted-printable, not base64: spam filters score text parts hidden in base64, a
    # reader of the raw mail can read it, and it is a quarter smaller. Line breaks go
    # out as CR LF, the canonical form of text (a lone CR is a line break as well).
    lines = content.replace("\r\n", "\n").replace("\r", "\n").encode()
    body = binascii.b2a_qp(lines, istext=True).replace(b"\n", b"\r\n")
    return (
        f"Content-Type: text/{subtype}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + body


def _attachment(item: Attachment) -> bytes:
    # The name and type come from an upload: one line, no quotes, the name in
    # RFC 2231 form when it is not ASCII.
    name = _one_line(item.filename).replace('"', "'").replace("\\", "_")
    disposition = (
        f'attachment; filename="{name}"'
        if name.isascii()
        else f"attachment; filename*={encode_rfc2231(name, 'utf-8')}"
    )
    content_type = _one_line(item.content_type)
    if not _CONTENT_TYPE.match(content_type):
        content_type = "application/octet-stream"
    body = base64.encodebytes(item.data).replace(b"\n", b"\r\n")
    return (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: {disposition}\r\n\r\n"
    ).encode() + body


_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$", re.I)


def compose(
    *,
    sender: str,
    to: str,
    return_path: str | None = None,
    subject: str,
    text: str,
    html: str,
    headers: dict[str, str],
    attachments: tuple[Attachment, ...] = (),
) -> OutgoingMail:
    """A multipart/alternative message with a plain-text and an HTML part, inside a
    multipart/mixed one with the attachments when there are any.

    `sender` may carry a display name (`Name <addr>`); `to` is one plain address;
    `return_path` is the envelope sender, where bounces go (the sender's address when
    not given). ValueError when an address cannot go out.
    """
    from_header, envelope_from = _address(sender)
    if return_path is not None:
        envelope_from = _address(return_path)[1]
    if not to or any(c.isspace() or c in '<>,"' for c in to):
        # Not the address itself: the reason goes to logs.
        raise ValueError("the recipient must be one plain address")
    to = mailbox(to)
    boundary = f"=_{uuid.uuid4().hex}"
    outer = f"=_{uuid.uuid4().hex}" if attachments else None
    lines = [
        f"From: {from_header}",
        f"To: {to}",
        f"Subject: {_header('Subject', subject)}",
        # +0000: `-0000` says the zone is unknown (RFC 5322 3.3), which spam filters score.
        f"Date: {format_datetime(datetime.now(UTC))}",
        *(f"{name}: {_one_line(value)}" for name, value in headers.items()),
        "MIME-Version: 1.0",
    ]
    alternative = f'Content-Type: multipart/alternative; boundary="{boundary}"'
    delimiter = f"\r\n--{boundary}\r\n".encode()
    body = b"".join(
        [
            delimiter,
            _part("plain", text),
            delimiter,
            _part("html", html),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    if outer is None:
        lines.append(alternative)
    else:
        lines.append(f'Content-Type: multipart/mixed; boundary="{outer}"')
        mixed = f"\r\n--{outer}\r\n".encode()
        body = b"".join(
            [
                mixed,
                alternative.encode(),
                b"\r\n",
                body,
                *(mixed + _attachment(a) for a in attachments),
                f"\r\n--{outer}--\r\n".encode(),
            ]
        )
    data = "\r\n".join(lines).encode() + b"\r\n" + body
    return OutgoingMail(
        envelope_from=envelope_from,
        recipients=[to],
        data=data,
        smtputf8=not (envelope_from.isascii() and to.isascii() and from_header.isascii()),
    )
