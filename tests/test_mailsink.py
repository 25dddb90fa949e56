"""The dev sink's mailbox as the API lists it: headers only, by recipient, the newest."""

from __future__ import annotations

from pathlib import Path

from journeys.mailsink import _header_block, list_mail


def _store(folder: Path, stamp: int, to: str, subject: str, body: bytes = b"Hi\r\n") -> str:
    mail_id = f"{stamp:013d}-{stamp:032x}"
    head = f"From: a@example.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n".encode()
    (folder / f"{mail_id}.eml").write_bytes(head + body)
    return mail_id


def test_only_the_header_block_is_read(tmp_path: Path) -> None:
    _store(tmp_path, 1, "ann@example.com", "Big", b"Z" * 100_000)
    (path,) = tmp_path.glob("*.eml")
    for chunk in (3, 5, 8192):  # the blank line may straddle two reads
        head = _header_block(path, chunk)
        assert head.endswith(b"Subject: Big\r\n\r\n") and b"Z" not in head, chunk
    (tmp_path / "0000000000009-headers-only.eml").write_bytes(b"To: b@example.com")
    assert _header_block(tmp_path / "0000000000009-headers-only.eml") == b"To: b@example.com"


def test_listing_by_recipient_and_the_newest(tmp_path: Path) -> None:
    first = _store(tmp_path, 1, "Ann <Ann@Example.com>", "One")
    _store(tmp_path, 2, "bob@example.com", "Two")
    third = _store(tmp_path, 3, "ann@example.com", "Three")
    assert [m["id"] for m in list_mail(tmp_path, to="ANN@example.com")] == [first, third]
    assert [m["subject"] for m in list_mail(tmp_path, limit=2)] == ["Two", "Three"]
    assert [m["subject"] for m in list_mail(tmp_path, to="ann@example.com", limit=1)] == ["Three"]
    assert list_mail(tmp_path, to="nobody@example.com") == []
    assert list_mail(tmp_path)[0]["to"] == ["Ann <Ann@Example.com>"]
