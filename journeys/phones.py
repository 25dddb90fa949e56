"""Phone numbers (E.164, by `phonenumbers`) and SMS segment counting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import phonenumbers


def normalise_phone(text: str, default_region: str | None) -> str:
    """`text` as E.164 (`+31612345678`); a number without a country code is read as
    one of `default_region` (an ISO country code such as NL). ValueError says why not."""
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError(
                f"{text!r} has no country code; write it as +<country code><number>"
            ) from None
        raise ValueError(f"{text!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        region = phonenumbers.region_code_for_number(number) or default_region or "any country"
        raise ValueError(f"{text!r} is not a valid phone number for {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# GSM 03.38: the basic character set, and the extension table whose characters
# take two septets (an escape and the character).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = set("\f^{}\\[~]|€")


@dataclass(frozen=True)
class Segments:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int


def segments(text: str) -> Segments:
    """How many SMS parts `text` takes: GSM-7 fits 160 septets in one part and 153
    in each of several (the rest is the concatenation header), UCS-2 70 and 67.
    A two-septet character or a surrogate pair is never split across parts."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text):
        sizes = [2 if c in _GSM_EXTENSION else 1 for c in text]
        return Segments("GSM-7", sum(sizes), _pack(sizes, 160, 153))
    sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Segments("UCS-2", sum(sizes), _pack(sizes, 70, 67))


def _pack(sizes: list[int], single: int, part: int) -> int:
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= single:
        return 1
    count, used = 1, 0
    for size in sizes:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count
