"""An SMS is checked for length once filled in (issue 24): a template within the limit
with a long first name went out as 11 parts before (15 in the issue's case)."""

from __future__ import annotations

import uuid

from activities.sms import too_long_for_sms
from tests.builders import linear_journey, mail
from tests.conftest import Stack
from tests.helpers import enrol, publish, wait_until_done


def test_the_reason_names_the_parts_and_the_limit() -> None:
    assert too_long_for_sms("hi", None) is None
    assert too_long_for_sms("x" * 160 * 2, 1) == (
        "text too long: 3 parts once filled in, the step allows 1"
    )
    assert too_long_for_sms("x" * 1595 + "y" * 600, None) == (
        "text too long: 15 parts once filled in, the step allows 10"
    )
    # max_segments never raises the channel's own limit
    assert too_long_for_sms("x" * 153 * 11, 50) is not None


async def test_a_text_too_long_once_filled_in_is_not_sent(stack: Stack) -> None:
    http = stack.http
    key = f"sms-length-{uuid.uuid4().hex[:8]}"
    await publish(
        http,
        linear_journey(
            key,
            "Long texts",
            ("long", {"type": "send_sms", "text": "{{ contact.first_name }} " + "x" * 1000}),
            (
                "short",
                {"type": "send_sms", "text": "Hi {{ contact.first_name }}", "max_segments": 1},
            ),
            ("after", mail("After the texts")),
        ),
    )
    phone = f"+3161{uuid.uuid4().int % 10**7:07d}"
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    created = await http.post(
        "/contacts", json={"phone": phone, "email": email, "first_name": "Ann" * 200}
    )
    assert created.status_code == 201, created.text
    contact = created.json()["id"]
    await enrol(http, key, contact)
    view = await wait_until_done(http, key, contact)
    assert view["status"] == "completed", view
    outcomes = {visit["step"]: visit.get("outcome") for visit in view["history"]}
    assert outcomes["long"] == "skipped: text too long: 11 parts once filled in, the step allows 10"
    assert outcomes["short"] == "skipped: text too long: 4 parts once filled in, the step allows 1"
    by_step = {m["step"]: m for m in view["messages"]}
    assert by_step["long"]["status"] == "skipped"
    assert by_step["short"]["status"] == "skipped"
    assert stack.sms_to(phone) == [], "nothing went out"
    await stack.wait_for_mail(email, count=1)  # and the journey went on
