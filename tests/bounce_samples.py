"""Bounce notices as relays and mailbox providers write them, for the parser's and the
intake's tests: a Postfix DSN (`unknown user`, as tests/test_bounces_postfix.py gets from
a real Postfix), a remote server's refusal relayed by an MTA, a delay warning, a DSN
after days of temporary failures, a success notice, ARF complaints with the original
message or only its headers, and what else reaches a bounce address (an auto-reply, an
old MTA's plain-text bounce)."""

from __future__ import annotations

import base64
import uuid

CRLF = "\r\n"


def _mail(text: str) -> bytes:
    """The sample's lines with CR LF, as they come over SMTP."""
    return text.lstrip("\n").replace("\n", CRLF).encode()


def original(message_id: uuid.UUID | str, envelope_from: str, to: str) -> str:
    """The headers and start of a mail as the product sends it (and the relay received)."""
    return f"""Return-Path: <{envelope_from}>
Received: from worker (localhost [127.0.0.1])
	by relay.example.net (Postfix) with ESMTP id 4F2A1C0E2B
	for <{to}>; Tue,  1 Dec 2026 10:00:00 +0000 (UTC)
From: Journeys <news@shop.example.com>
To: {to}
Subject: Hello Ann
Date: Tue, 01 Dec 2026 10:00:00 +0000
Message-ID: <{message_id}@shop.example.com>
List-Unsubscribe: <https://shop.example.com/t/u/AgHg4x>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_b1"

--=_b1
Content-Type: text/plain; charset=utf-8

Hi Ann
--=_b1--
"""


def postfix_dsn(
    bounce_to: str,
    message_id: uuid.UUID | str,
    recipient: str = "nobody@local.example.net",
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = 'X-Postfix; unknown user: "nobody"',
    subject: str = "Undelivered Mail Returned to Sender",
) -> bytes:
    """A Postfix DSN: the notification, the delivery report, the returned message."""
    return _mail(f"""
Return-Path: <>
Received: by relay.example.net (Postfix)
	id 5E3D0C0E2C; Tue,  1 Dec 2026 10:00:01 +0000 (UTC)
Date: Tue,  1 Dec 2026 10:00:01 +0000 (UTC)
From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
Subject: {subject}
To: {bounce_to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4F2A1C0E2B.1764583201/relay.example.net"
Content-Transfer-Encoding: 8bit
Message-Id: <20261201100001.5E3D0C0E2C@relay.example.net>

This is a MIME-encapsulated message.

--4F2A1C0E2B.1764583201/relay.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{recipient}>: unknown user: "nobody"

--4F2A1C0E2B.1764583201/relay.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net
X-Postfix-Queue-ID: 4F2A1C0E2B
X-Postfix-Sender: rfc822; {bounce_to}
Arrival-Date: Tue,  1 Dec 2026 10:00:00 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--4F2A1C0E2B.1764583201/relay.example.net
Content-Description: Undelivered Message
Content-Type: message/rfc822

{original(message_id, bounce_to, recipient)}
--4F2A1C0E2B.1764583201/relay.example.net--
""")


def remote_refusal_dsn(bounce_to: str, message_id: uuid.UUID | str) -> bytes:
    """A DSN for a refusal by the recipient's server (an SMTP 550 5.1.1 after the relay
    accepted the mail), with the returned message's headers only."""
    return _mail(f"""
From: Mail Delivery Subsystem <mailer-daemon@mx.example.org>
To: {bounce_to}
Subject: Delivery Status Notification (Failure)
Date: Tue, 01 Dec 2026 10:05:00 +0000
Message-ID: <dsn-77@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; boundary="b-77"; report-type="delivery-status"

--b-77
Content-Type: text/plain; charset="UTF-8"

Your message wasn't delivered to ann@example.org because the address couldn't be found.

--b-77
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Tue, 01 Dec 2026 10:04:59 +0000

Final-Recipient: rfc822; ann@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; inbound.example.org. (192.0.2.7, the server for the domain example.org.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does
 not exist. 550 5.1.1 https://support.example.org/bounce
Last-Attempt-Date: Tue, 01 Dec 2026 10:05:00 +0000

--b-77
Content-Type: text/rfc822-headers

Return-Path: <{bounce_to}>
From: Journeys <news@shop.example.com>
To: ann@example.org
Subject: Hello Ann
Message-ID: <{message_id}@shop.example.com>

--b-77--
""")


def arf_complaint(
    message_id: uuid.UUID | str,
    envelope_from: str,
    *,
    to: str = "fbl@bounces.example.com",
    feedback_type: str = "abuse",
    headers_only: bool = False,
) -> bytes:
    """An ARF report (RFC 5965) a mailbox provider's feedback loop sends."""
    returned = original(message_id, envelope_from, "ann@example.org")
    third = (
        f"Content-Type: text/rfc822-headers\n\n{returned.split(chr(10) + chr(10))[0]}\n"
        if headers_only
        else f"Content-Type: message/rfc822\nContent-Disposition: inline\n\n{returned}"
    )
    return _mail(f"""
From: <staff@fbl.example.org>
Date: Tue, 01 Dec 2026 12:00:00 +0000
Subject: FW: Hello Ann
To: <{to}>
Message-ID: <arf-19@fbl.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Tue, 01 Dec 2026 10:00:00 +0000.
For more information about this format please see
http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{envelope_from}>
Original-Rcpt-To: <ann@example.org>
Arrival-Date: Tue, 01 Dec 2026 10:00:00 +0000
Reported-Domain: shop.example.com
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
{third}
--part1_13d.2e68ed54_boundary--
""")


def base64_dsn(bounce_to: str, message_id: uuid.UUID | str, *, encoded: str | None = None) -> bytes:
    """A DSN whose delivery-status part is base64 (against RFC 3464, seen in the wild);
    `encoded`: that part's text instead (bad padding, say)."""
    fields = (
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.2.1\r\n"
        "Diagnostic-Code: smtp; 550 5.2.1 mailbox disabled\r\n"
    )
    if encoded is None:
        encoded = base64.encodebytes(fields.encode()).decode()
    return _mail(f"""
From: postmaster@mx.example.org
To: {bounce_to}
Subject: Undeliverable: Hello Ann
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="x"

--x
Content-Type: text/plain

Delivery has failed.
--x
Content-Type: message/delivery-status
Content-Transfer-Encoding: base64

{encoded}
--x
Content-Type: text/rfc822-headers

Message-ID: <{message_id}@shop.example.com>

--x--
""")


def auto_reply(bounce_to: str) -> bytes:
    return _mail(f"""
From: Ann <ann@example.org>
To: {bounce_to}
Subject: Out of office: Hello Ann
Auto-Submitted: auto-replied
Date: Tue, 01 Dec 2026 10:00:02 +0000

I am away until Monday.
""")


def plain_text_bounce(bounce_to: str) -> bytes:
    """An old MTA's bounce: no report part, only words."""
    return _mail(f"""
From: MAILER-DAEMON@old.example.org
To: {bounce_to}
Subject: failure notice

Hi. This is the qmail-send program at old.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.

<ann@example.org>:
Sorry, no mailbox here by that name. (#5.1.1)
""")
