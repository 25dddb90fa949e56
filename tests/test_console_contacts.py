"""The console's contacts, message log and dev mail pages, over plain HTTP as a browser
without JavaScript reads them: searching, a contact's page with its journeys, messages
and dossier, filtering and paging the log, a mail from the sink in a sandboxed frame."""

from __future__ import annotations

import asyncio
import html
import re
import smtplib
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.builders import journey
from tests.conftest import Stack
from tests.helpers import api_on, create_contact, enrol, publish, wait_until_done
from tests.test_console import browser, post_sign_in, said, signed_in  # noqa: F401 (a fixture)
from tests.test_delivery_errors import report


def rows(page: httpx.Response, attribute: str) -> list[str]:
    """The values of `attribute` on the page's table rows, in order."""
    return re.findall(rf'<tr [^>]*\b{attribute}="([^"]+)"', page.text)


def row_of(page: httpx.Response, attribute: str, value: str) -> str:
    found = re.search(rf'<tr {attribute}="{re.escape(value)}".*?</tr>', page.text, re.S)
    assert found, f"no row {attribute}={value}"
    return html.unescape(found.group(0))


async def messages_settled(stack: Stack, key: str, count: int, timeout: float = 30) -> None:
    """Once `count` messages of journey `key` have their outcome."""
    for _ in range(int(timeout * 10)):
        done = await stack.pool.fetchval(
            "SELECT count(*) FROM messages WHERE journey_key = $1 AND status <> 'sending'", key
        )
        if done >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key}: {done} of {count} messages settled")


async def test_search_by_email_and_external_id(stack: Stack, browser: httpx.AsyncClient) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:8]
    alpha = await create_contact(
        stack.http, external_id=f"cs-{tag}-alpha", email=f"Alpha.{tag}@Example.com"
    )
    beta = await create_contact(
        stack.http, external_id=f"cs-{tag}-beta", email=f"beta.{tag}@example.com"
    )
    percent = await create_contact(
        stack.http, external_id=f"cs-{tag}%x", email=f"pct.{tag}@example.com"
    )
    under = await create_contact(
        stack.http,
        external_id=f"cs-{tag}_y",
        email=f"under.{tag}@example.com",
        first_name="<b>Bold</b>",
    )

    async def found(q: str) -> list[str]:
        page = await browser.get("/console/contacts", params={"q": q})
        assert page.status_code == 200, page.text
        assert f'value="{html.escape(q)}"' in page.text, "the search keeps what was typed"
        return rows(page, "data-contact")

    # E-mail: a prefix, case-insensitive, and the whole address.
    assert await found(f"alpha.{tag}") == [alpha]
    assert await found(f"ALPHA.{tag}@example.COM") == [alpha]
    assert await found(f"beta.{tag}@") == [beta]
    # External id: exact, and a prefix (newest first).
    assert await found(f"cs-{tag}-beta") == [beta]
    assert await found(f"cs-{tag}-") == [beta, alpha]
    assert await found(f"cs-{tag}") == [under, percent, beta, alpha]
    # % and _ are themselves, not wildcards.
    assert await found(f"cs-{tag}%") == [percent]
    assert await found(f"cs-{tag}_") == [under]
    assert await found(f"%{tag}") == []
    assert await found(f"{tag}") == []  # a prefix, not anywhere in it
    # The contact's id finds it too.
    assert await found(beta) == [beta]

    # Without a search: the latest, newest first, each linking to its page.
    latest = await browser.get("/console/contacts")
    assert latest.status_code == 200
    listed = rows(latest, "data-contact")
    assert listed[:4] == [under, percent, beta, alpha] and len(listed) <= 50
    assert f'href="/console/contacts/{under}"' in latest.text
    # What contacts say is escaped.
    assert "&lt;b&gt;Bold&lt;/b&gt;" in latest.text and "<b>Bold</b>" not in latest.text
    assert f"Alpha.{tag}@Example.com" in row_of(latest, "data-contact", alpha)


async def test_contact_page_shows_journeys_messages_and_dossier(
    stack: Stack,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    tag = uuid.uuid4().hex[:8]
    key = f"contact-page-{tag}"
    await publish(
        stack.http,
        journey(
            key,
            name="Contact page <welcome>",
            steps={
                "hello": {
                    "type": "send_email",
                    "subject": "Hello {{ contact.first_name }} " + tag,
                    "html": "<p>Hi</p>",
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    email = f"page.{tag}@example.com"
    contact = await create_contact(
        stack.http,
        external_id=f"page-{tag}",
        email=email,
        first_name="Pia",
        last_name="Lot",
        fields={"plan": "gold", "score": 7, "note": "<i>vip</i>"},
    )
    await enrol(stack.http, key, contact)
    await stack.wait_for_mail(email, 1)
    await wait_until_done(stack.http, key, contact)

    page = await browser.get(f"/console/contacts/{contact}")
    assert page.status_code == 200, page.text
    text = said(page)
    assert "Pia Lot" in text and f"page-{tag}" in text and email in text
    profile = re.search(r'<dl class="fields" id="fields">.*?</dl>', page.text, re.S)
    assert profile, "the free fields"
    assert "plan" in profile.group(0) and "gold" in profile.group(0)
    assert "score" in profile.group(0) and ">7<" in profile.group(0)
    assert "&lt;i&gt;vip&lt;/i&gt;" in page.text and "<i>vip</i>" not in page.text
    assert "Subscribed" in text and "bounced or complained" not in text
    # The journey it is in, with its run's page.
    assert f'href="/console/journeys/{key}/participants/{contact}"' in page.text
    assert "Contact page &lt;welcome&gt;" in page.text
    # Its message.
    message = row_of(page, "data-message", rows(page, "data-message")[0])
    assert f"Hello Pia {tag}" in message and "sent" in message and "email" in message
    assert len(rows(page, "data-message")) == 1
    # The dossier: the journey entered and the message, the newest first.
    kinds = rows(page, "data-kind")
    assert "journey_entered" in kinds and "message" in kinds
    assert kinds.index("message") < kinds.index("journey_entered")
    dossier = re.search(r'<table class="list" id="dossier">.*?</table>', page.text, re.S)
    assert dossier and f"Hello Pia {tag}" in html.unescape(dossier.group(0))
    # The same lines as the API's dossier.
    api = (await stack.http.get(f"/contacts/{contact}/dossier")).json()["entries"]
    assert [e["kind"] for e in api] == kinds
    # Older lines: those before a moment.
    earlier = await browser.get(f"/console/contacts/{contact}", params={"before": api[0]["at"]})
    assert earlier.status_code == 200
    assert rows(earlier, "data-kind") == [e["kind"] for e in api if e["at"] < api[0]["at"]]
    assert f'<a href="/console/contacts/{contact}">Newest</a>' in earlier.text
    # After a line: the cursor an "Older" link carries (entries of one moment all shown).
    after = await browser.get(
        f"/console/contacts/{contact}", params={"cursor": f"{api[0]['id']}@{api[0]['at']}"}
    )
    assert rows(after, "data-kind") == kinds[1:]
    bad = await browser.get(f"/console/contacts/{contact}", params={"cursor": "x"})
    assert bad.status_code == 422 and "not a cursor this dossier gave" in bad.text

    missing = await browser.get(f"/console/contacts/{uuid.uuid4()}")
    assert missing.status_code == 404 and "does not exist" in missing.text
    assert "<h1>404</h1>" in missing.text
    malformed = await browser.get("/console/contacts/not-an-id")
    assert malformed.status_code == 422 and "<h1>422</h1>" in malformed.text


async def test_message_log_filters_and_pages(
    stack: Stack,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    tag = uuid.uuid4().hex[:8]
    key, texts = f"log-{tag}", f"log-sms-{tag}"
    await publish(
        stack.http,
        journey(
            key,
            steps={
                "note": {
                    "type": "send_email",
                    "subject": "Log " + tag,
                    "html": "<p>x</p>",
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    await publish(
        stack.http,
        journey(
            texts,
            steps={
                "text": {"type": "send_sms", "text": "Hi " + tag, "next": "end"},
                "end": {"type": "end"},
            },
        ),
    )
    mailed = [await create_contact(stack.http) for _ in range(52)]
    no_address = await create_contact(stack.http, email=None)
    bouncing = await create_contact(stack.http, email=f"bounce-{tag}@example.com")
    texted = await create_contact(stack.http, phone=f"+3163{uuid.uuid4().int % 10**7:07d}")
    await enrol(stack.http, key, *mailed, no_address, bouncing)
    await enrol(stack.http, texts, texted)
    await messages_settled(stack, key, 54)
    await messages_settled(stack, texts, 1)
    # A hard bounce reported later for a mail that was sent.
    hard_bounced = mailed[0]
    message_id = await stack.pool.fetchval(
        "SELECT id FROM messages WHERE journey_key = $1 AND contact_id = $2",
        key,
        uuid.UUID(hard_bounced),
    )
    reported = await report(
        stack.http, {"message_id": str(message_id), "kind": "hard_bounce", "detail": "5.1.1"}
    )
    assert reported.json()["status"] == "recorded", reported.text

    async def log(**params: str) -> httpx.Response:
        page = await browser.get("/console/messages", params=params)
        assert page.status_code == 200, page.text
        return page

    async def all_pages(**params: str) -> list[str]:
        """The contact ids of every row, following "Older" to the end."""
        page = await log(**params)
        contacts: list[str] = []
        while True:
            contacts += re.findall(r'<td><a href="/console/contacts/([0-9a-f-]{36})">', page.text)
            older = re.search(r'<a href="([^"]+)" rel="next" id="older">', page.text)
            if not older:
                return contacts
            page = await browser.get(html.unescape(older.group(1)))
            assert page.status_code == 200, page.text

    first = await log(journey=key)
    assert len(rows(first, "data-message")) == 50
    assert 'id="older"' in first.text
    everyone = await all_pages(journey=key)
    assert len(everyone) == 54 and set(everyone) == {*mailed, no_address, bouncing}

    skipped = await log(journey=key, status="skipped")
    assert rows(skipped, "data-status") == ["skipped"] and 'id="older"' not in skipped.text
    assert f"/console/contacts/{no_address}" in skipped.text
    assert "no e-mail address" in said(skipped)

    bounced = await log(journey=key, status="bounced")
    assert sorted(await all_pages(journey=key, status="bounced")) == sorted(
        [bouncing, hard_bounced]
    )
    refused, hard = (row_of(bounced, "data-message", m) for m in rows(bounced, "data-message"))
    if hard_bounced not in hard:
        refused, hard = hard, refused
    # Refused at RCPT (550 5.1.1): rejected, with the relay's code and text.
    assert "rejected: rejected by the mail server at RCPT: 550 5.1.1" in refused
    assert 'data-status="sent"' in hard and "bounced: hard bounce (5.1.1)" in hard

    # Sent: sent, and no delivery error reported.
    sent = await all_pages(journey=key, status="sent")
    assert sorted(sent) == sorted(mailed[1:])
    sent_page = await log(journey=key, status="sent")
    assert set(rows(sent_page, "data-status")) == {"sent"}
    assert f"Log {tag}" in sent_page.text
    # The filters stay on the "Older" link and in the form.
    older = re.search(r'<a href="([^"]+)" rel="next" id="older">', sent_page.text)
    assert older and "status=sent" in older.group(1) and f"journey={key}" in older.group(1)
    assert '<option value="sent" selected>' in sent_page.text

    sms = await log(channel="sms", journey=texts)
    assert rows(sms, "data-channel") == ["sms"] and f"Hi {tag}" in sms.text
    assert rows(await log(channel="email", journey=texts), "data-message") == []
    assert set(rows(await log(channel="sms"), "data-channel")) == {"sms"}

    # The contact page says the address bounced, and shows the bounce on the message.
    person = await browser.get(f"/console/contacts/{hard_bounced}")
    assert "The e-mail address bounced or complained" in said(person)
    assert "bounced: hard bounce (5.1.1)" in said(person)

    theirs = await log(contact=bouncing)
    assert len(rows(theirs, "data-message")) == 1 and f"/console/contacts/{bouncing}" in theirs.text
    # The journey links to its page; the step is named.
    assert (
        f'href="/console/journeys/{key}"' in sent_page.text
        and "<code>note</code>" in sent_page.text
    )

    for bad in (
        {"status": "lost"},
        {"channel": "fax"},
        {"contact": "nobody"},
        {"journey": "Bad Key"},
    ):
        answer = await browser.get("/console/messages", params=bad)
        assert answer.status_code == 422, bad
        assert "<h1>422</h1>" in answer.text


def send_to_sink(stack: Stack, msg: EmailMessage) -> None:
    where = urlsplit(stack.settings.smtp_url)
    assert where.hostname and where.port
    with smtplib.SMTP(where.hostname, where.port) as smtp:
        smtp.send_message(msg)


async def test_dev_mail_shows_a_mail_in_a_sandboxed_frame(
    stack: Stack,
    browser: httpx.AsyncClient,  # noqa: F811
) -> None:
    tag = uuid.uuid4().hex[:8]
    msg = EmailMessage()
    msg["From"] = "Journeys <journeys@example.com>"
    msg["To"] = f"dev.{tag}@example.com"
    msg["Subject"] = f"Dev mail {tag} <check>"
    msg.set_content(f"The text part {tag}")
    msg.add_alternative(
        f'<p id="body">Dev <b>mail</b> {tag}</p><script>parent.document.title="owned"</script>'
        '<a href="https://example.com/x" target="_top">go</a>',
        subtype="html",
    )
    msg.add_attachment(b"a,b\n", maintype="text", subtype="csv", filename="list.csv")
    await asyncio.to_thread(send_to_sink, stack, msg)
    await stack.wait_for_mail(f"dev.{tag}@example.com", 1)

    listing = await browser.get("/console/dev-mail")
    assert listing.status_code == 200, listing.text
    assert '<a href="/console/dev-mail" aria-current="page">Dev mail</a>' in listing.text
    mail_id = next(m for m in rows(listing, "data-mail") if tag in row_of(listing, "data-mail", m))
    line = row_of(listing, "data-mail", mail_id)
    assert f"Dev mail {tag} <check>" in line and f"dev.{tag}@example.com" in line
    ids = rows(listing, "data-mail")
    assert ids == sorted(ids, reverse=True), "the newest first (ids start with the time)"
    # Only the mail to one address (in any case), over the page and the dev API.
    only = await browser.get(f"/console/dev-mail?to=DEV.{tag}@Example.com")
    assert rows(only, "data-mail") == [mail_id]
    nobody = await browser.get(f"/console/dev-mail?to=nobody.{tag}@example.com")
    assert f"No mail to nobody.{tag}@example.com." in said(nobody)
    api = (await stack.http.get("/dev/mail", params={"to": f"dev.{tag}@example.com"})).json()
    assert [m["id"] for m in api] == [mail_id] and api[0]["subject"] == f"Dev mail {tag} <check>"
    newest = (await stack.http.get("/dev/mail", params={"limit": 2})).json()
    assert len(newest) == 2 and newest[0]["id"] < newest[1]["id"] and newest[1]["id"] >= mail_id
    assert (await stack.http.get("/dev/mail", params={"limit": 0})).status_code == 422

    page = await browser.get(f"/console/dev-mail/{mail_id}")
    assert page.status_code == 200, page.text
    text = said(page)
    assert f"<h1>Dev mail {tag} <check></h1>" in text
    assert "journeys@example.com" in text and f"dev.{tag}@example.com" in text
    assert f"The text part {tag}" in text and "list.csv" in text
    # The HTML only inside the frame's srcdoc, escaped; the frame sandboxed with nothing
    # allowed (no scripts, no navigating the console).
    frame = re.search(r'<iframe class="mail" sandbox srcdoc="([^"]*)"[^>]*>', page.text)
    assert frame, page.text
    assert "allow-" not in frame.group(0)
    srcdoc = html.unescape(frame.group(1))
    assert '<script>parent.document.title="owned"</script>' in srcdoc
    assert f'<p id="body">Dev <b>mail</b> {tag}</p>' in srcdoc
    assert "<script" not in page.text.lower()
    assert f"<b>mail</b> {tag}" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")

    assert (await browser.get("/console/dev-mail/0000000000000-" + "0" * 32)).status_code == 404
    assert (await browser.get("/console/dev-mail/nothing")).status_code == 404


async def test_no_dev_mail_without_a_sink(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"dev_mail_dir": None})
    async with api_on(settings) as http:
        signed = await post_sign_in(http, key=settings.api_key.get_secret_value())
        assert signed.status_code == 303
        journeys_page = await http.get("/console/journeys")
        assert journeys_page.status_code == 200 and "/console/dev-mail" not in journeys_page.text
        gone = await http.get("/console/dev-mail")
        assert gone.status_code == 404 and "no local mail sink" in gone.text


async def test_a_read_only_key_sees_these_pages(stack: Stack) -> None:
    made = await stack.http.post(
        "/api-keys", json={"name": f"reader-{uuid.uuid4().hex[:6]}", "scopes": ["read"]}
    )
    assert made.status_code == 201, made.text
    contact = await create_contact(stack.http, email=f"ro.{uuid.uuid4().hex[:8]}@example.com")
    viewer = await signed_in(stack, made.json()["key"])
    try:
        pages: list[tuple[str, dict[str, Any]]] = [
            ("/console/contacts", {}),
            ("/console/contacts", {"q": "ro."}),
            (f"/console/contacts/{contact}", {}),
            ("/console/messages", {}),
            ("/console/messages", {"status": "sent", "channel": "email"}),
            ("/console/dev-mail", {}),
        ]
        for path, params in pages:
            page = await viewer.get(path, params=params)
            assert page.status_code == 200, (path, page.text)
            assert "(read only)" in page.text
        listing = await viewer.get("/console/dev-mail")
        first = rows(listing, "data-mail")
        if first:
            assert (await viewer.get(f"/console/dev-mail/{first[0]}")).status_code == 200
    finally:
        await viewer.aclose()
        await stack.http.delete(f"/api-keys/{made.json()['name']}")


@pytest.mark.parametrize("path", ["/console/contacts", "/console/messages", "/console/dev-mail"])
async def test_signed_out_goes_to_sign_in(stack: Stack, path: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        page = await anonymous.get(path)
        assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in")
