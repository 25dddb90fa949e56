"""Bounce addresses and notices, without a server: the signed token in the envelope
sender, the DSN and ARF parser (`journeys.notices`), and what the intake makes of a
mail (`journeys.bounces.judge`): recorded, ignored, or kept with the reason."""

from __future__ import annotations

import hashlib
import threading
import uuid
from typing import Any

import asyncpg
import pytest

from journeys import bounces
from journeys.bounces import delivered_to, judge
from journeys.notices import NotAReport, parse_notice
from journeys.settings import check_domain
from journeys.store.bounces import Judged, Taken
from journeys.tokens import bounce_address, bounce_token, link_token, verify_bounce_token
from tests.bounce_samples import (
    arf_complaint,
    auto_reply,
    base64_dsn,
    plain_text_bounce,
    postfix_dsn,
    remote_refusal_dsn,
)

SECRET = "unit-secret"
DOMAIN = "bounces.example.com"
MID = uuid.UUID("6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")


def address(message_id: uuid.UUID = MID, secret: str = SECRET) -> str:
    return bounce_address(message_id, secret, DOMAIN)


# -- the token ------------------------------------------------------------------------------


def test_a_bounce_address_fits_a_local_part_in_any_case() -> None:
    made = address()
    local, _, domain = made.partition("@")
    assert domain == DOMAIN
    assert local.startswith("bounces+") and len(local) == 56 <= 64  # RFC 5321's limit
    token = local.removeprefix("bounces+")
    assert token == token.lower() and token.isalnum()  # no delimiter a relay reads
    # A relay that upper-cases or lower-cases the local part changes nothing.
    for spelling in (token, token.upper(), token.swapcase(), token[:20].upper() + token[20:]):
        assert verify_bounce_token(spelling, SECRET) == MID
    # Every message has its own; the same message always the same.
    assert bounce_token(MID, SECRET) == token != bounce_token(uuid.uuid4(), SECRET)


def test_a_forged_or_altered_token_verifies_as_nothing() -> None:
    token = bounce_token(MID, SECRET)
    assert verify_bounce_token(token, "another-secret") is None
    assert verify_bounce_token(bounce_token(MID, "another-secret"), SECRET) is None
    flipped = token[:10] + ("a" if token[10] != "a" else "b") + token[11:]
    assert verify_bounce_token(flipped, SECRET) is None
    # Another message id with the old tag: the tag covers the id.
    other = bounce_token(uuid.uuid4(), SECRET)
    assert verify_bounce_token(other[:26] + token[26:], SECRET) is None
    for junk in ("", token[:-1], token + "a", token[:-1] + "1", token[:-1] + "é", "0" * 48):
        assert verify_bounce_token(junk, SECRET) is None
    # A tracking token is no bounce token, whatever it is made into.
    tracking = link_token("u", MID, SECRET)
    assert verify_bounce_token(tracking, SECRET) is None
    assert verify_bounce_token(tracking[:48].lower(), SECRET) is None


def test_the_bounce_domain_is_checked() -> None:
    assert check_domain(" Bounces.Example.COM. ") == DOMAIN
    for bad in ("", "a..b", "-x.example.com", "bounce_x.example.com", "x@y", "a b"):
        with pytest.raises(ValueError):
            check_domain(bad)


# -- the parser -----------------------------------------------------------------------------


def test_a_postfix_dsn_for_an_unknown_user_is_a_hard_bounce() -> None:
    notice = parse_notice(postfix_dsn(address(), MID))
    assert notice.report == "dsn" and notice.kind == "hard_bounce"
    assert notice.detail == 'failed, 5.1.1 (X-Postfix; unknown user: "nobody")'
    assert notice.recipient == "nobody@local.example.net"
    assert notice.original_message_id == f"<{MID}@shop.example.com>"
    assert notice.senders == (address(),)  # X-Postfix-Sender, the original's Return-Path


def test_a_remote_refusal_keeps_the_smtp_reply_and_reads_headers_only() -> None:
    notice = parse_notice(remote_refusal_dsn(address(), MID))
    assert notice.kind == "hard_bounce" and notice.recipient == "ann@example.org"
    assert notice.detail.startswith("failed, 5.1.1 (smtp; 550-5.1.1 The email account")
    assert notice.original_message_id == f"<{MID}@shop.example.com>"
    assert notice.senders == (address(),)


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind"),
    [
        # The address does not work (the rule of the send path's refusals too).
        ("failed", "5.1.1", "smtp; 550 5.1.1 user unknown", "hard_bounce"),
        ("failed", "5.1.10", "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound", "hard_bounce"),
        ("failed", "5.2.1", "smtp; 550 5.2.1 mailbox disabled", "hard_bounce"),
        # Any other permanent failure is a refusal of the message: the address stays.
        ("failed", "5.2.2", "smtp; 552 5.2.2 mailbox full", "rejected"),
        ("failed", "5.7.1", "smtp; 554 5.7.1 message refused as spam", "rejected"),
        ("failed", "5.7.26", "smtp; 550 5.7.26 unauthenticated mail is prohibited", "rejected"),
        ("failed", "5.1.8", "smtp; 553 5.1.8 sender address domain not found", "rejected"),
        # Gave up after days of temporary failures: the address may still be good.
        ("failed", "4.4.1", "X-Postfix; connect to mx.example.org: timed out", "soft_bounce"),
        ("delayed", "4.4.1", "X-Postfix; connect to mx.example.org: timed out", "soft_bounce"),
        ("Failed", "5.0.0 (permanent failure)", "smtp; 550 no", "rejected"),
        # An undetermined Status: the enhanced code of the SMTP reply decides.
        ("failed", "5.0.0", "smtp; 550 5.1.1 user unknown", "hard_bounce"),
        ("failed", "5.0.0", "smtp; 550 5.7.1 relaying denied", "rejected"),
        # No usable Status: the SMTP reply decides; without an enhanced code, no bounce.
        ("failed", "", "smtp; 450 try later", "soft_bounce"),
        ("failed", "", "smtp; 550 no such user", "rejected"),
        ("failed", "", "smtp; 550-5.1.1 user unknown", "hard_bounce"),
        ("failed", "", "smtp; 550 relay not permitted", "rejected"),  # Exim's default
        ("delivered", "2.0.0", "smtp; 250 2.0.0 OK", None),
        ("relayed", "2.0.0", "", None),
        ("expanded", "2.0.0", "", None),
    ],
)
def test_each_action_and_status_class(
    action: str, status: str, diagnostic: str, kind: str | None
) -> None:
    notice = parse_notice(
        postfix_dsn(address(), MID, action=action, status=status, diagnostic=diagnostic)
    )
    assert notice.kind == kind, notice


def test_a_dsn_about_several_recipients_reports_the_worst() -> None:
    raw = postfix_dsn(address(), MID, action="delayed", status="4.4.1").replace(
        b"\r\n\r\n--4F2A1C0E2B.1764583201/relay.example.net\r\nContent-Description: Undelivered",
        b"\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n"
        b"\r\n--4F2A1C0E2B.1764583201/relay.example.net\r\nContent-Description: Undelivered",
    )
    notice = parse_notice(raw)
    assert (notice.kind, notice.recipient) == ("hard_bounce", "bob@example.org")


def test_a_dsn_and_the_send_path_classify_alike() -> None:
    """One rule (`journeys.delivery_status`): what a DSN's Status makes of a failure is
    what the same enhanced code in a relay's refusal at RCPT makes of it."""
    from activities.smtp import SmtpRejected

    for status in ("5.1.1", "5.1.0", "5.1.7", "5.1.8", "5.2.1", "5.2.2", "5.7.1", "5.0.0"):
        raw = postfix_dsn(address(), MID, status=status, diagnostic=f"smtp; 550 {status} no")
        refused = SmtpRejected(550, f"{status} no", stage="RCPT")
        assert parse_notice(raw).kind == refused.delivery_error, status


def test_a_detail_names_no_address_and_has_no_control_characters() -> None:
    """Details go to logs and PostgreSQL (which refuses a NUL in text and jsonb): one
    printable line, addresses redacted as a send-time refusal's are."""
    diagnostic = "smtp; 550 5.1.1 <ann@example.org>: Recipient\x00 address\x1b[2J rejected"
    notice = parse_notice(postfix_dsn(address(), MID, diagnostic=diagnostic))
    assert notice.detail == (
        "failed, 5.1.1 (smtp; 550 5.1.1 <address>: Recipient address [2J rejected)"
    )
    # A byte that is no UTF-8 in a header: decoded, never a lone surrogate.
    raw = postfix_dsn(address(), MID, diagnostic="smtp; 550 5.1.1 caf\u00e9 \u00ff")
    notice = parse_notice(raw.replace("\u00ff".encode(), b"\xff"))
    assert notice.detail.encode("utf-8") and "\x00" not in notice.detail
    assert notice.detail.startswith("failed, 5.1.1 (smtp; 550 5.1.1 ")


def test_a_base64_delivery_status_part_is_read_too() -> None:
    notice = parse_notice(base64_dsn(address(), MID))
    assert notice.kind == "hard_bounce" and notice.detail.startswith("failed, 5.2.1")
    assert notice.original_message_id == f"<{MID}@shop.example.com>"


@pytest.mark.parametrize("headers_only", [False, True])
def test_an_arf_abuse_report_is_a_complaint(headers_only: bool) -> None:
    notice = parse_notice(arf_complaint(MID, address(), headers_only=headers_only))
    assert notice.report == "arf" and notice.kind == "complaint"
    assert notice.detail == "abuse report by SomeGenerator/1.0"
    assert notice.recipient == "ann@example.org"
    assert notice.original_message_id == f"<{MID}@shop.example.com>"
    assert address() in notice.senders  # Original-Mail-From


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [("abuse", "complaint"), ("fraud", "complaint"), ("not-spam", None), ("auth-failure", None)],
)
def test_feedback_types(feedback_type: str, kind: str | None) -> None:
    assert parse_notice(arf_complaint(MID, address(), feedback_type=feedback_type)).kind == kind


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (auto_reply("bounces@x"), "an auto-reply"),
        (plain_text_bounce("bounces@x"), "no message/delivery-status"),
        (b"", "no message/delivery-status"),
        (b"\xff\xfe garbage \x00\r\n\r\n\x80", "no message/delivery-status"),
        (
            postfix_dsn("b@x", MID).replace(b"Action: failed\r\n", b""),
            "a recipient's block has no Action",
        ),
        (postfix_dsn("b@x", MID).replace(b"Action: failed", b"Action: exploded"), "unknown Action"),
        (arf_complaint(MID, "b@x").replace(b"Feedback-Type: abuse", b"X: y"), "no Feedback-Type"),
        # Whatever the parser raises is no report, with the reason: bad base64 padding.
        (base64_dsn("b@x", MID, encoded="UmVwb3J0aW5nLU1UQTogZG5zOyB"), "does not parse: Error"),
    ],
)
def test_what_is_no_report_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(NotAReport, match=reason):
        parse_notice(raw)


def test_a_dsn_returned_inside_another_mail_is_not_read_as_one() -> None:
    """A bounce of a bounce, or a forwarded DSN: the report inside the returned message
    is not this mail's."""
    inner = postfix_dsn(address(), MID).decode()
    raw = (
        "From: someone@example.org\r\nSubject: Fwd: bounce\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\nContent-Type: text/plain'
        "\r\n\r\nsee below\r\n--m\r\nContent-Type: message/rfc822\r\n\r\n"
        f"{inner}\r\n--m--\r\n"
    ).encode()
    with pytest.raises(NotAReport):
        parse_notice(raw)


# -- what the intake makes of a mail ---------------------------------------------------------


def test_a_dsn_to_its_bounce_address_is_recorded_against_its_message() -> None:
    judged = judge(postfix_dsn(address(), MID), [address()], SECRET, DOMAIN)
    assert (judged.outcome, judged.message_id, judged.kind, judged.report) == (
        "recorded",
        MID,
        "hard_bounce",
        "dsn",
    )
    # The relay lower-cased (or upper-cased) the address: the same message.
    shouted = address().upper()
    assert judge(postfix_dsn(shouted, MID), [shouted], SECRET, DOMAIN).message_id == MID


def test_a_complaint_to_a_fixed_address_finds_its_message_in_the_report() -> None:
    """A feedback loop sends to the address it was registered with; the report's
    Original-Mail-From (the envelope sender) carries the signed token."""
    raw = arf_complaint(MID, address(), to=f"fbl@{DOMAIN}")
    judged = judge(raw, [f"fbl@{DOMAIN}"], SECRET, DOMAIN)
    assert (judged.outcome, judged.message_id, judged.kind) == ("recorded", MID, "complaint")


def test_forged_unknown_unparseable_and_inconsistent_notices_are_kept() -> None:
    forged = address(secret="not-the-secret")
    judged = judge(postfix_dsn(forged, MID), [forged], SECRET, DOMAIN)
    assert judged.outcome == "kept" and judged.reason is not None
    assert judged.reason.startswith("forged") and judged.message_id is None
    # A DSN whose only token is a forged one in the report.
    judged = judge(postfix_dsn(forged, MID), [f"postmaster@{DOMAIN}"], SECRET, DOMAIN)
    assert judged.outcome == "kept" and str(judged.reason).startswith("forged")
    # No bounce address at all (spam to the bounce domain).
    judged = judge(postfix_dsn("news@shop.example.com", MID), [f"info@{DOMAIN}"], SECRET, DOMAIN)
    assert judged.outcome == "kept" and str(judged.reason).startswith("names no message")
    # A token of another domain is not ours to read.
    elsewhere = bounce_address(MID, SECRET, "elsewhere.example.net")
    judged = judge(postfix_dsn(elsewhere, MID), [elsewhere], SECRET, DOMAIN)
    assert judged.outcome == "kept" and str(judged.reason).startswith("names no message")
    # Genuine address, but no report: an auto-reply, a plain-text bounce.
    for raw in (auto_reply(address()), plain_text_bounce(address())):
        judged = judge(raw, [address()], SECRET, DOMAIN)
        assert judged.outcome == "kept" and str(judged.reason).startswith("unparseable")
        assert judged.message_id == MID  # kept with the message it names, recording nothing
    # The returned message is another one than the address names.
    judged = judge(postfix_dsn(address(), uuid.uuid4()), [address()], SECRET, DOMAIN)
    assert judged.outcome == "kept" and str(judged.reason).startswith("inconsistent")


def test_a_success_notice_is_ignored() -> None:
    raw = postfix_dsn(address(), MID, action="delivered", status="2.0.0", diagnostic="smtp; 250")
    judged = judge(raw, [address()], SECRET, DOMAIN)
    assert (judged.outcome, judged.message_id, judged.kind) == ("ignored", MID, None)


class _Store:
    """`take_notice` in memory: fails its first `failures` calls with `error`."""

    def __init__(self, error: Exception | None = None, failures: int = 0) -> None:
        self.error, self.failures = error, failures
        self.calls: list[tuple[list[str], Judged, bytes | None]] = []

    async def __call__(
        self,
        pool: object,
        raw: bytes,
        envelope_to: list[str],
        via: str,
        judged: Judged,
        digest: bytes | None = None,
    ) -> Taken:
        self.calls.append((envelope_to, judged, digest))
        if len(self.calls) <= self.failures:
            assert self.error is not None
            raise self.error
        return Taken(len(self.calls), judged.outcome, judged.reason, judged.message_id)


async def test_the_intake_parses_and_hashes_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notice may be 40 MB: parsing and hashing it on the listener's event loop held
    every other session (and the poller) meanwhile."""
    threads: list[threading.Thread] = []
    real_judge = bounces.judge

    def judge_spy(*args: Any) -> Judged:
        threads.append(threading.current_thread())
        return real_judge(*args)

    store = _Store()
    monkeypatch.setattr(bounces, "judge", judge_spy)
    monkeypatch.setattr(bounces, "take_notice", store)
    raw = postfix_dsn(address(), MID)
    taken = await bounces.Intake(None, SECRET, DOMAIN).take(raw, [address()], "lmtp")  # type: ignore[arg-type]
    assert taken.outcome == "recorded"
    assert threads and threads[0] is not threading.main_thread()
    [(_, _, digest)] = store.calls
    assert digest == hashlib.sha256(raw).digest()


async def test_what_postgresql_refuses_is_kept_and_an_outage_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notice PostgreSQL refuses as judged (a value it cannot store) is kept with the
    reason, addresses printable, instead of failing (LMTP's 451) at every attempt; an
    outage still fails, for the relay to try again."""
    refused = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00")
    store = _Store(refused, failures=1)
    monkeypatch.setattr(bounces, "take_notice", store)
    intake = bounces.Intake(None, SECRET, DOMAIN)  # type: ignore[arg-type]
    odd = f"odd\x00one@{DOMAIN}"
    taken = await intake.take(postfix_dsn(address(), MID), [address(), odd], "lmtp")
    assert taken.outcome == "kept"
    [(_, first, _), (envelope_to, kept, _)] = store.calls
    assert first.outcome == "recorded"
    assert (kept.outcome, kept.message_id) == ("kept", MID)
    assert kept.reason == (
        "not stored as recorded: CharacterNotInRepertoireError: invalid byte sequence: 0x00"
    )
    assert envelope_to == [address(), f"odd one@{DOMAIN}"]
    away = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    monkeypatch.setattr(bounces, "take_notice", _Store(away, failures=1))
    with pytest.raises(asyncpg.exceptions.CannotConnectNowError):
        await intake.take(postfix_dsn(address(), MID), [address()], "lmtp")


async def test_a_bug_in_judging_keeps_the_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Judged:
        raise KeyError("a bug")

    store = _Store()
    monkeypatch.setattr(bounces, "judge", broken)
    monkeypatch.setattr(bounces, "take_notice", store)
    taken = await bounces.Intake(None, SECRET, DOMAIN).take(b"x", [address()], "imap")  # type: ignore[arg-type]
    assert (taken.outcome, taken.reason) == ("kept", "not judged: KeyError: 'a bug'")


def test_a_mailbox_copy_names_its_recipient_in_its_headers() -> None:
    raw = b"Delivered-To: bounces@example.com\r\nX-Original-To: " + address().encode()
    raw += b"\r\nTo: Bounces <" + address().encode() + b">\r\nSubject: x\r\n\r\nbody\r\n"
    assert delivered_to(raw) == ["bounces@example.com", address(), address()]
