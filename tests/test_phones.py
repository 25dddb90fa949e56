"""Phone numbers as E.164 and SMS parts counted the way operators bill them."""

from __future__ import annotations

import pytest

from journeys.phones import normalise_phone, segments


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("06 1234 5678", "NL", "+31612345678"),
        ("+31 (0)6-12345678", None, "+31612345678"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("(201) 555-0123", "US", "+12015550123"),
    ],
)
def test_numbers_become_e164(text: str, region: str | None, expected: str) -> None:
    assert normalise_phone(text, region) == expected


@pytest.mark.parametrize(
    ("text", "region", "says"),
    [
        ("0612345678", None, "has no country code"),
        ("hello", "NL", "is not a phone number"),
        ("06 12", "NL", "is not a valid phone number for NL"),
    ],
)
def test_bad_numbers_say_why(text: str, region: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        normalise_phone(text, region)


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters count twice: 160 septets
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€", "GSM-7", 1),  # 154 septets: one part
        ("a" * 152 + "€" + "a" * 7, "GSM-7", 2),
        ("é ü Ä ñ", "GSM-7", 1),  # accents in the basic set
        ("ł" * 70, "UCS-2", 1),
        ("ł" * 71, "UCS-2", 2),
        ("ł" * 134, "UCS-2", 2),
        ("ł" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),  # a surrogate pair is two units
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_segments(text: str, encoding: str, count: int) -> None:
    parts = segments(text)
    assert (parts.encoding, parts.count) == (encoding, count)


def test_a_two_septet_character_is_not_split_across_parts() -> None:
    # 152 septets, then a euro sign: it does not fit in the first part's 153, so the
    # first part holds 152 and the second starts with the euro sign.
    assert segments("a" * 152 + "€" + "a" * 152).count == 3
    assert segments("a" * 153 + "a" * 153).count == 2
