"""What a mail server's permanent failure says about the recipient's address: one rule
for a refusal met while the product talks to the relay (`activities.smtp`, a 5xx at
RCPT or DATA) and for a delivery-status notice that comes back later
(`journeys.notices`, a DSN's `Action: failed` with a class 5 `Status`).

Only the enhanced status code (RFC 3463, class.subject.detail) says the address does
not work: addressing status X.1.x (bad mailbox, bad domain, moved), except X.1.7 and
X.1.8 (the *sender's* address), and X.2.1 (mailbox disabled). That is a hard bounce,
and the address is suppressed for good. Any other permanent failure is `rejected`: a
refusal of this message, recorded as a delivery error of it, the address left alone —
a policy refusal (X.7.x: spam, relaying denied, authentication), a full mailbox
(X.2.2), a message too large (X.3.4), the undetermined X.0.0, and a reply without an
enhanced code at all, whatever its basic code: a bare `550` is as often a relay's
policy (Exim's default `550 relay not permitted`) as an unknown user, and reading it
as the latter would suppress every address the relay refused.

Pure, and free of side effects.
"""

from __future__ import annotations

import re

from journeys.definition.common import DeliveryErrorKind

# An enhanced status code (RFC 3463) at the start of a reply's text or a DSN's Status.
ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")


def enhanced_code(text: str | None) -> str | None:
    """The enhanced status code at the start of `text` (`5.1.1`), or None."""
    found = ENHANCED.match((text or "").lstrip())
    return found.group(0) if found else None


def permanent_failure_kind(enhanced: str | None) -> DeliveryErrorKind:
    """What a permanent failure with the enhanced status code `enhanced` (or None: the
    reply had none) is: `hard_bounce` when it says the recipient's address does not
    work (the address is then suppressed), else `rejected` (see the module's doc)."""
    found = ENHANCED.fullmatch(enhanced or "")
    if found is None:
        return "rejected"
    _, subject, detail = found.groups()
    if (subject == "1" and detail not in ("7", "8")) or (subject, detail) == ("2", "1"):
        return "hard_bounce"
    return "rejected"
