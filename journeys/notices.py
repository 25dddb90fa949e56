"""Bounce notices: what a delivery-status notification (RFC 3464) or a feedback report
(ARF, RFC 5965) sent back to a mail's bounce address says, read with the stdlib's
`email` package. Pure: no I/O, so every rule has a unit test (`tests/test_notices.py`).

- A DSN (`multipart/report; report-type=delivery-status`) has a `message/delivery-status`
  part: a block of fields about the message, then one block per recipient. `Action:
  failed` with a `Status` of class 5 is a hard bounce when its enhanced status code says
  the address does not work (5.1.x but 5.1.7/5.1.8, 5.2.1: `journeys.delivery_status`,
  the rule the send path's refusals follow), else `rejected` (a policy refusal, a full
  mailbox: the address is left alone); a failure of class 4 (a relay that gave up after
  retrying a temporary error for days) or `Action: delayed` is a soft bounce;
  `delivered`, `relayed` and `expanded` (a success notice) are nothing to record.
- An ARF report (`report-type=feedback-report`) has a `message/feedback-report` part;
  `Feedback-Type: abuse` (or `fraud`) is a complaint, other types (`not-spam`,
  `auth-failure`, `virus`, `other`) are nothing to record.
- Either may carry the original message (`message/rfc822`) or its headers
  (`text/rfc822-headers`): its Message-ID is cross-checked against the message the bounce
  address names, and its Return-Path, like the report's `Original-Mail-From` and
  Postfix's `X-Postfix-Sender`, is where a bounce address may be found when the notice
  was not sent to one (a feedback loop's fixed address).

Anything else (an auto-reply, a plain-text bounce of an old MTA, a spam, a mail the
parser fails on in any way: a base64 part with bad padding) is `NotAReport`, with the
reason. A detail is one printable line (no NUL or other control character, which
PostgreSQL or a log would choke on) without e-mail addresses, as a send-time refusal's.
"""

from __future__ import annotations

import binascii
import email
import email.message
import email.policy
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from journeys.definition.common import DeliveryErrorKind
from journeys.delivery_status import enhanced_code, permanent_failure_kind
from journeys.text import printable, without_addresses

# The delivery error's `detail` is at most this long (the webhook's limit is 2,000).
MAX_DETAIL = 1000

ReportType = Literal["dsn", "arf"]
_COMPLAINTS = ("abuse", "fraud")
_SUCCESS = ("delivered", "relayed", "expanded")
# The SMTP reply in a Diagnostic-Code (`smtp; 550-5.1.1 ...`): its class, and the
# enhanced status code after it.
_SMTP_REPLY = re.compile(r"^\s*smtp\s*;\s*([245])\d\d(?:[ -]+(\S+))?", re.I)
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


class NotAReport(ValueError):
    """The mail is no delivery-status notification or feedback report (says why)."""


@dataclass(frozen=True)
class Notice:
    report: ReportType
    kind: DeliveryErrorKind | None  # None: nothing to record (a success, another feedback)
    detail: str  # what happened, in the report's words: `5.1.1 (smtp; 550 5.1.1 ...)`
    recipient: str | None = None  # the original recipient the report is about
    original_message_id: str | None = None  # `<...>`, of the returned message's headers
    # Addresses that name the original mail's envelope sender inside the report (where a
    # bounce address may be found when the notice was not sent to one).
    senders: tuple[str, ...] = field(default=())


def parse_notice(raw: bytes) -> Notice:
    """The notice in `raw` (a whole mail as received), or `NotAReport`: whatever the
    mail makes the parser do (a base64 part with bad padding raised `binascii.Error`),
    so that a crafted mail is kept with the reason instead of stopping the intake."""
    try:
        return _notice(raw)
    except NotAReport:
        raise
    except Exception as exc:
        why = printable(without_addresses(f"{type(exc).__name__}: {exc}"))[:200]
        raise NotAReport(f"the mail does not parse: {why}") from None


def _notice(raw: bytes) -> Notice:
    mail = email.message_from_bytes(raw, policy=email.policy.compat32)
    status = feedback = None
    for part in _parts(mail):
        kind = part.get_content_type()
        if kind == "message/delivery-status" and status is None:
            status = part
        elif kind == "message/feedback-report" and feedback is None:
            feedback = part
    if feedback is not None:  # an ARF report (a DSN part inside one would be odd)
        return _arf(mail, feedback)
    if status is not None:
        return _dsn(mail, status)
    if (mail.get("Auto-Submitted") or "").strip().lower().startswith("auto-replied"):
        raise NotAReport("an auto-reply (Auto-Submitted: auto-replied), not a delivery report")
    raise NotAReport(
        "no message/delivery-status (RFC 3464) or message/feedback-report (RFC 5965) part"
    )


def _parts(part: email.message.Message) -> Iterator[email.message.Message]:
    """The parts of a mail, depth first, without looking inside returned messages (a
    bounce of a bounce carries the first DSN inside its message/rfc822)."""
    yield part
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for sub in part.get_payload():
            if isinstance(sub, email.message.Message):
                yield from _parts(sub)


def _blocks(part: email.message.Message) -> list[email.message.Message]:
    """The field blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding") or "").strip().lower()
    if encoding in ("base64", "quoted-printable"):
        # Against RFC 3464 (7bit or 8bit only), but seen: the parser read the encoded text
        # as blocks; take it back and decode it.
        text = (
            "\n".join(b.as_string() for b in payload if isinstance(b, email.message.Message))
            if isinstance(payload, list)
            else str(payload)
        )
        decoded = (
            binascii.a2b_base64(text.encode("ascii", "ignore"))
            if encoding == "base64"
            else quopri.decodestring(text.encode("utf-8", "replace"))
        )
        return _split_blocks(decoded.decode("utf-8", "replace"))
    if isinstance(payload, list) and payload:
        blocks = [b for b in payload if isinstance(b, email.message.Message)]
        # message/feedback-report is parsed as a nested message whose headers are the
        # fields (and whose body is empty).
        return blocks if part.get_content_type() == "message/delivery-status" else blocks[:1]
    # A part the parser left as text.
    data = part.get_payload(decode=True)
    return _split_blocks(data.decode("utf-8", "replace") if isinstance(data, bytes) else "")


def _split_blocks(text: str) -> list[email.message.Message]:
    text = text.replace("\r\n", "\n")
    return [
        email.message_from_string(block.strip("\n") + "\n", policy=email.policy.compat32)
        for block in re.split(r"\n[ \t]*\n", text)
        if block.strip()
    ]


def _field(block: email.message.Message, name: str) -> str | None:
    value = block.get(name)
    if value is None:
        return None
    return " ".join(str(value).split()) or None


def _typed_address(value: str | None) -> str | None:
    """`rfc822; ann@example.com` -> `ann@example.com` (an address type, then the address)."""
    if not value:
        return None
    _, _, address = value.partition(";")
    return (address if ";" in value else value).strip().strip("<>") or None


def _original(mail: email.message.Message) -> email.message.Message | None:
    """The returned message, or its headers, when the report carries them."""
    for part in _parts(mail):
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                first = payload[0]
                return first if isinstance(first, email.message.Message) else None
        if kind in ("text/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            return email.message_from_string(text, policy=email.policy.compat32)
    return None


def _about_original(
    mail: email.message.Message, senders: list[str | None]
) -> tuple[str | None, tuple[str, ...]]:
    original = _original(mail)
    message_id = None
    if original is not None:
        found = _MESSAGE_ID.search(str(original.get("Message-ID") or ""))
        message_id = found.group(0) if found else None
        senders.append(str(original.get("Return-Path") or "").strip().strip("<>") or None)
    return message_id, tuple(dict.fromkeys(s for s in senders if s))


def _detail(text: str) -> str:
    """A delivery error's detail: one printable line, no addresses, bounded."""
    text = printable(without_addresses(text))
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


# A recipient's outcome, worst first: which one a notice about several is reported as.
_RANK = {"hard_bounce": 0, "rejected": 1, "soft_bounce": 2, None: 3}


def _failure_kind(status: str | None, diagnostic: str | None) -> DeliveryErrorKind:
    """What `Action: failed` is, by its Status (or, where that says nothing more than
    its class, the SMTP reply in the Diagnostic-Code)."""
    enhanced = enhanced_code(status)
    reply = _SMTP_REPLY.match(diagnostic or "")
    if enhanced is None or enhanced.endswith(".0.0"):
        said = enhanced_code(reply.group(2)) if reply and reply.group(2) else None
        if said is not None and (enhanced is None or said[0] == enhanced[0]):
            enhanced = said
    klass = enhanced[0] if enhanced else reply.group(1) if reply else "5"
    if klass != "5":
        return "soft_bounce"  # a relay gave up after retrying a temporary error
    return permanent_failure_kind(enhanced)


def _dsn(mail: email.message.Message, part: email.message.Message) -> Notice:
    blocks = _blocks(part)
    if len(blocks) < 2:
        raise NotAReport("the delivery-status part has no recipient's block")
    about_message, recipients = blocks[0], blocks[1:]
    outcomes: list[tuple[DeliveryErrorKind | None, str, str | None]] = []
    for block in recipients:
        action = (_field(block, "Action") or "").lower()
        status = _field(block, "Status")
        diagnostic = _field(block, "Diagnostic-Code")
        if not action:
            raise NotAReport("a recipient's block has no Action")
        kind: DeliveryErrorKind | None
        if action == "failed":
            kind = _failure_kind(status, diagnostic)
        elif action == "delayed":
            kind = "soft_bounce"
        elif action in _SUCCESS:
            kind = None
        else:
            raise NotAReport(f"unknown Action {action[:40]!r} in a recipient's block")
        words = f"{action}, {status or 'no status'}"
        detail = f"{words} ({diagnostic})" if diagnostic else words
        recipient = _typed_address(_field(block, "Original-Recipient")) or _typed_address(
            _field(block, "Final-Recipient")
        )
        outcomes.append((kind, detail, recipient))
    kind, detail, recipient = min(outcomes, key=lambda o: _RANK[o[0]])
    message_id, senders = _about_original(
        mail, [_typed_address(_field(about_message, "X-Postfix-Sender"))]
    )
    return Notice("dsn", kind, _detail(detail), recipient, message_id, senders)


def _arf(mail: email.message.Message, part: email.message.Message) -> Notice:
    blocks = _blocks(part)
    fields = blocks[0] if blocks else None
    feedback_type = (_field(fields, "Feedback-Type") or "").lower() if fields else ""
    if not feedback_type:
        raise NotAReport("the feedback report has no Feedback-Type")
    assert fields is not None
    kind: DeliveryErrorKind | None = "complaint" if feedback_type in _COMPLAINTS else None
    agent = _field(fields, "User-Agent")
    detail = f"{feedback_type} report" + (f" by {agent}" if agent else "")
    message_id, senders = _about_original(
        mail, [_typed_address(_field(fields, "Original-Mail-From"))]
    )
    recipient = _typed_address(_field(fields, "Original-Rcpt-To"))
    return Notice("arf", kind, _detail(detail), recipient, message_id, senders)
