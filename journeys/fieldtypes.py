"""Declared types of free contact fields, and the stored form of each value.

Side-effect free (stdlib and nothing else): publishing, the API and activities
all check values with the same function.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, get_args

FieldType = Literal["text", "number", "boolean", "date", "datetime", "list"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
# A record's fields (`POST /record-types`) hold single values: no lists.
RecordFieldType = Literal["text", "number", "boolean", "date", "datetime"]


def coerce(field_type: str, value: Any) -> Any:
    """`value` in the stored form of `field_type`; ValueError saying what was expected.

    None is always allowed: it clears the field.
    """
    if value is None:
        return None
    if field_type == "text":
        if isinstance(value, str):
            return value
    elif field_type == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif field_type == "boolean":
        if isinstance(value, bool):
            return value
    elif field_type == "date":
        if isinstance(value, str):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise ValueError(f"expected a date such as 2027-01-31, not {value!r}")
    elif field_type == "datetime":
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.utcoffset() is not None:
                return parsed.isoformat()
        raise ValueError(
            f"expected a date and time with an offset such as 2027-01-31T09:00:00+01:00, "
            f"not {value!r}"
        )
    elif field_type == "list":
        if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            return value
        raise ValueError(f"expected a list of texts, numbers or booleans, not {value!r}")
    else:
        raise ValueError(f"unknown field type {field_type!r}")
    raise ValueError(f"expected {_article(field_type)} {field_type}, not {value!r}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
