"""The MIME message as a mail client reads it, down to the raw header bytes."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from activities.message import compose

UNSUBSCRIBE = "<https://t.example/t/u/" + "x" * 120 + ">"


def wire(
    subject: str, sender: str = "Journeys <j@example.com>", to: str = "ann@example.com"
) -> bytes:
    mail = compose(
        sender=sender,
        to=to,
        subject=subject,
        text="Hallo Zoë",
        html="<p>Hallo Zoë</p>",
        headers={
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    assert mail.recipients == ["ann@example.com"]
    return mail.data  # exactly what goes over SMTP after DATA


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_unicode_subject_and_sender_name_round_trip() -> None:
    subject = "Één aanbieding voor Zoë: " + "korting " * 12
    msg = parse(wire(subject, sender="Zoë van Dijk <zoe@example.com>"))
    assert msg["Subject"] == subject
    assert msg["From"].addresses[0].display_name == "Zoë van Dijk"
    assert msg["From"].addresses[0].addr_spec == "zoe@example.com"
    assert msg.get_body(("plain",)).get_content() == "Hallo Zoë"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content() == "<p>Hallo Zoë</p>"  # type: ignore[union-attr]


def test_list_unsubscribe_stays_a_plain_url_on_the_wire() -> None:
    raw = wire("Hi")
    header = raw.split(b"List-Unsubscribe:", 1)[1].split(b"List-Unsubscribe-Post")[0]
    assert b"=?" not in header  # no RFC 2047 encoded word
    assert header.strip() == UNSUBSCRIBE.encode()
    assert parse(raw)["List-Unsubscribe"] == UNSUBSCRIBE
    assert parse(raw)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_lines_end_in_crlf_and_stay_short() -> None:
    raw = wire("Hi", sender="Zoë <z@example.com>")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_line_breaks_in_contact_data_cannot_add_headers() -> None:
    msg = parse(wire("Hi Ann\r\nBcc: victim@example.com\nX-Evil: 1"))
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "Hi Ann Bcc: victim@example.com X-Evil: 1"
    with pytest.raises(ValueError, match="one plain address"):
        wire("Hi", to="ann@example.com\r\nBcc: victim@example.com")


def test_text_parts_are_quoted_printable_and_read_back_as_written() -> None:
    """Readable in the raw mail, lines of at most 76 characters, and decoded to the text
    that was written (with CR LF line breaks, the canonical form of text)."""
    text = "Dear Zoë, \nsee https://x.example/" + "a" * 150 + "\n.a dot line\r\nend = 1\rlast"
    html = "<p>" + "é" * 100 + '</p>\n<a href="https://x.example/?a=1&amp;b=2">x</a>'
    mail = compose(
        sender="j@example.com", to="ann@example.com", subject="Hi", text=text, html=html, headers={}
    )
    msg = parse(mail.data)
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    assert (
        plain["Content-Transfer-Encoding"]
        == rich["Content-Transfer-Encoding"]
        == ("quoted-printable")
    )
    assert plain.get_content() == "Dear Zoë, \r\nsee https://x.example/" + "a" * 150 + (
        "\r\n.a dot line\r\nend = 1\r\nlast"
    )
    assert rich.get_content() == html.replace("\n", "\r\n")
    assert b"Dear Zo=C3=AB,=20\r\n" in mail.data  # the space before the break is kept
    bodies = re.findall(rb"quoted-printable\r\n\r\n(.*?)\r\n--", mail.data, re.DOTALL)
    assert len(bodies) == 2
    assert max(len(line) for body in bodies for line in body.split(b"\r\n")) == 76
