"""The MIME message as a mail client reads it, down to the raw header bytes."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtplib.email import flatten_message

from activities.message import compose

UNSUBSCRIBE = "<https://t.example/t/u/" + "x" * 120 + ">"


def wire(subject: str, sender: str = "Journeys <j@example.com>") -> bytes:
    msg = compose(
        sender=sender,
        to="ann@example.com",
        subject=subject,
        text="Hallo Zoë",
        html="<p>Hallo Zoë</p>",
        headers={
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    return flatten_message(msg)  # exactly what aiosmtplib puts on the wire


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
    assert b"".join(header.split()) == UNSUBSCRIBE.encode()
    assert parse(raw)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
