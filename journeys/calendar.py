"""Marketer wait rules as UTC instants: calendar durations, local times, anniversaries, slots.

Pure functions for activities: they read the time zone database (zoneinfo) and
nothing else, and take the current instant as an argument (`now`, aware), so
the workflow only ever receives the resulting UTC instant and replays unchanged.

Conventions shared by every function here:

- Results are aware datetimes in UTC.
- `now` is taken to the whole second (microseconds dropped): a rule whose instant
  is the current second is due now, not tomorrow. "At or after now" below means
  at or after that second, so a result can lie up to 999 ms before `now`.
- A local wall time that does not exist (the spring-forward gap) becomes the
  first instant after the gap: 02:30 on the night clocks go from 02:00 to 03:00
  is 03:00 new time. An ambiguous one (fall-back, the hour that happens twice)
  is the first occurrence (fold=0), except in `add_calendar`, which keeps the
  occurrence the start instant was in.
- Calendar durations are ISO 8601 (`P1Y2M3W4DT5H6M7S`, leading `-` for
  negative). Years, months, weeks and days move the local date and keep the
  local wall time (31 Jan + P1M = 28/29 Feb; P1D across DST is 23 or 25 hours);
  hours, minutes and seconds are elapsed time, added after the date part.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from journeys.definition.common import DURATION

WEEKDAYS: Final[dict[str, int]] = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}

WORKDAYS: Final[frozenset[int]] = frozenset(range(5))
QUARTER_HOUR: Final[int] = 15 * 60

_LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class CalendarDuration:
    """A parsed ISO 8601 duration: signed calendar part, signed elapsed part."""

    months: int
    days: int
    elapsed: timedelta

    @property
    def has_calendar_part(self) -> bool:
        return self.months != 0 or self.days != 0


def parse_duration(text: str) -> CalendarDuration:
    """Parse `P1Y2M3W4DT5H6M7S` (any part optional, at least one given; `-P1D` negative).

    Integers only; a sign applies to the whole duration. Raises ValueError naming `text`.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be text like 'P1D' or '-PT2H', not {text!r}")
    # The same grammar as the definition format's durations, with an optional sign.
    match = DURATION.match(text.removeprefix("-"))
    parts = match.groupdict() if match else {}
    if not match:
        raise ValueError(
            f"duration {text!r} is not an ISO 8601 duration such as 'P1D', 'P1M', "
            "'-P1W' or 'PT2H30M' (years, months, weeks, days, then T hours, minutes, "
            "seconds; whole numbers; a leading '-' for negative)"
        )
    n = {k: int(v or 0) for k, v in parts.items()}
    sign = -1 if text.startswith("-") else 1
    try:
        elapsed = timedelta(hours=n["hours"], minutes=n["minutes"], seconds=n["seconds"])
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None
    return CalendarDuration(
        months=sign * (n["years"] * 12 + n["months"]),
        days=sign * (n["weeks"] * 7 + n["days"]),
        elapsed=sign * elapsed,
    )


def parse_local_time(text: str) -> time:
    """`"09:00"` -> time(9, 0). Exactly HH:MM, 00:00 to 23:59; ValueError otherwise."""
    match = _LOCAL_TIME.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"local time {text!r} is not HH:MM between 00:00 and 23:59")
    return time(int(match[1]), int(match[2]))


def add_calendar(instant: datetime, duration: str, tz: ZoneInfo) -> datetime:
    """`instant` plus the ISO 8601 `duration`, calendar parts in the local time of `tz`.

    Years and months keep the day of month, clamped to the month's end; weeks and
    days keep the local wall time; the result is then resolved in `tz` (gap: first
    instant after it; ambiguous: the same occurrence, first or second, as
    `instant` had, else the first) and the elapsed hours/minutes/seconds added.
    For a negative duration the same order applies (-P1M1D from 31 Mar: 28 Feb,
    then 27 Feb). Returns aware UTC; ValueError for a bad duration or a naive instant.
    """
    _require_aware(instant, "instant")
    parsed = parse_duration(duration)
    try:
        if not parsed.has_calendar_part:
            return instant.astimezone(UTC) + parsed.elapsed
        local = instant.astimezone(tz)
        moved = _shift_date(local.replace(tzinfo=None), parsed, duration)
        return _resolve(moved, tz, fold=local.fold) + parsed.elapsed
    except OverflowError:
        raise ValueError(f"{instant.isoformat()} plus {duration!r} is out of range") from None


def next_local_time(
    now: datetime, tz: ZoneInfo, at: time, weekdays: frozenset[int] | None
) -> datetime:
    """The first instant at or after `now` (to the second) that is `at` local time in `tz`.

    Only days whose local weekday (0=Mon..6=Sun) is in `weekdays` count; None means
    every day. A nonexistent `at` (spring-forward gap) is the first instant after
    the gap that day; an ambiguous one (fall-back) the first occurrence only.
    """
    threshold = _threshold(now)
    if at.tzinfo is not None:
        raise ValueError("at must be a local wall time without tzinfo")
    days = _check_weekdays(weekdays)
    today = threshold.astimezone(tz).date()
    # From yesterday: a rule resolved into a gap at midnight can land on the next date.
    for offset in range(-1, 9):
        day = today + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        candidate = _resolve(datetime.combine(day, at), tz, fold=0)
        if candidate >= threshold:
            return candidate
    raise AssertionError("unreachable: every week has a matching day")  # pragma: no cover


def end_of_quiet_hours(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """When the quiet hours `start`-`end` (local wall times in `tz`; past midnight when
    `start` is later than `end`) that `now` falls in end; None when `now` is not in them.

    The end is the first instant from `now` on whose wall time is `end`: after a
    spring-forward gap, the first instant after the gap; in the hour a fall-back
    repeats, the occurrence still to come (the second, when `now` is in the second).
    """
    if start == end:
        raise ValueError("quiet hours must not start and end at the same time")
    local = now.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    if not ((start <= wall < end) if start < end else (wall >= start or wall < end)):
        return None
    ending = next_local_time(now, tz, end, None)
    # next_local_time takes a repeated wall time's first occurrence only; in the
    # repeated hour today's second one may be the next.
    second = _resolve(datetime.combine(local.date(), end), tz, fold=1)
    return second if _threshold(now) <= second < ending else ending


def next_anniversary(
    now: datetime,
    tz: ZoneInfo,
    date_value: date,
    offset: str | None,
    at: time | None,
) -> datetime:
    """The first yearly recurrence of `date_value`'s month and day, shifted, at or after `now`.

    Each year's anniversary (29 February falls on 28 February in other years) is
    taken at local time `at` (default 00:00), moved by the calendar duration
    `offset` (`-P1D`: the day before, same wall time; `-PT2H`: two hours earlier),
    and resolved in `tz`. The first of these instants at or after `now` (to the
    second) wins: if this year's has passed, next year's. With an offset the
    winning anniversary can be in another calendar year than the result
    (3 January with -P1W is 27 December of the year before).
    """
    threshold = _threshold(now)
    if at is not None and at.tzinfo is not None:
        raise ValueError("at must be a local wall time without tzinfo")
    if isinstance(date_value, datetime):
        date_value = (
            date_value.astimezone(tz) if date_value.tzinfo is not None else date_value
        ).date()
    shift = parse_duration(offset) if offset is not None else None
    wall = at or time(0)

    def instant_in(year: int) -> datetime:
        if not 1 <= year <= 9999:
            raise ValueError(f"no anniversary of {date_value.isoformat()} in range")
        local = datetime.combine(_anniversary_date(date_value, year), wall)
        if shift is None:
            return _resolve(local, tz, fold=0)
        moved = _shift_date(local, shift, offset or "")
        return _resolve(moved, tz, fold=0) + shift.elapsed

    # Instants grow with the year: step from this year to the first one not before now.
    year = threshold.astimezone(tz).year
    try:
        if instant_in(year) >= threshold:
            while instant_in(year - 1) >= threshold:
                year -= 1
        else:
            year += 1
            while instant_in(year) < threshold:
                year += 1
        return instant_in(year)
    except OverflowError:
        raise ValueError(f"no anniversary of {date_value.isoformat()} in range") from None


def instant_of_field(value: str | date | datetime, tz: ZoneInfo) -> datetime:
    """A stored contact field as a UTC instant, for "wait until field".

    Accepts a date or an ISO 8601 date string (local midnight in `tz`), a datetime
    or ISO 8601 date-time string with an offset (that instant) or without one
    (local wall time in `tz`; gap and fall-back as everywhere here).
    Anything else raises ValueError saying what was found.
    """
    if isinstance(value, str):
        text = value.strip()
        parsed: date | datetime
        try:
            parsed = date.fromisoformat(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    f"field value {value!r} is not an ISO 8601 date or date-time "
                    "(e.g. '2025-03-30', '2025-03-30T09:00' or '2025-03-30T09:00:00+02:00')"
                ) from None
    elif isinstance(value, date):
        parsed = value
    else:
        raise ValueError(
            f"field value {value!r} ({type(value).__name__}) is not a date or date-time"
        )
    try:
        if isinstance(parsed, datetime):
            if parsed.tzinfo is not None and parsed.utcoffset() is not None:
                return parsed.astimezone(UTC)
            return _resolve(parsed.replace(tzinfo=None), tz, fold=0)
        return _resolve(datetime.combine(parsed, time(0)), tz, fold=0)
    except OverflowError:
        raise ValueError(f"field value {value!r} is out of range") from None


def first_free_slot(
    now: datetime,
    tz: ZoneInfo,
    duration: timedelta,
    busy: list[tuple[datetime, datetime]],
    day_start: time = time(9),
    day_end: time = time(17),
    horizon_days: int = 366,
) -> datetime:
    """The earliest start of `duration` in working hours, clear of every busy interval.

    Starts are on the local quarter-hour grid, at or after `now` (to the second,
    rounded up: 09:07 -> 09:15; after a busy interval ending 10:10 -> 10:15).
    [start, start + duration) must lie within one weekday's (Mon-Fri, local)
    [day_start, day_end] and overlap no busy [begin, end) (aware, any order,
    overlapping allowed). The duration is elapsed time; working hours are local,
    so on a day with a clock change inside them the window is shorter or longer.
    Only starts before now + `horizon_days` days count. ValueError if the duration
    is not positive or longer than a working day, or nothing is free.
    """
    threshold = _threshold(now)
    if day_start.tzinfo is not None or day_end.tzinfo is not None:
        raise ValueError("day_start and day_end must be local wall times without tzinfo")
    if day_start >= day_end:
        raise ValueError(f"day_start {day_start} must be before day_end {day_end}")
    working_day = datetime.combine(date.min, day_end) - datetime.combine(date.min, day_start)
    if duration <= timedelta(0):
        raise ValueError(f"duration must be positive, not {duration}")
    if duration > working_day:
        raise ValueError(f"duration {duration} is longer than a working day ({working_day})")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, not {horizon_days}")
    starts, ends = _merge_busy(busy)
    limit = threshold + timedelta(days=horizon_days)
    first_day = threshold.astimezone(tz).date() - timedelta(days=1)
    last_day = limit.astimezone(tz).date()
    for n in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=n)
        if day.weekday() not in WORKDAYS:
            continue
        window_start = _resolve(datetime.combine(day, day_start), tz, fold=0)
        window_end = _resolve(datetime.combine(day, day_end), tz, fold=0)
        start = _ceil_quarter(max(window_start, threshold), tz)
        while start + duration <= window_end and start < limit:
            # The first busy interval that ends after `start` is the only one that can clash.
            i = bisect_right(ends, start)
            if i == len(ends) or starts[i] >= start + duration:
                return start
            start = _ceil_quarter(ends[i], tz)
    raise ValueError(
        f"no free {duration} slot between {day_start} and {day_end} on a weekday "
        f"within {horizon_days} days of {threshold.isoformat()}"
    )


# --- helpers ---------------------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC), not {value!r}")


def _threshold(now: datetime) -> datetime:
    """`now` in UTC to the whole second."""
    _require_aware(now, "now")
    return now.astimezone(UTC).replace(microsecond=0)


def _check_weekdays(weekdays: frozenset[int] | None) -> frozenset[int]:
    if weekdays is None:
        return frozenset(range(7))
    if not weekdays:
        raise ValueError("weekdays must name at least one day (or be None for every day)")
    bad = sorted(repr(d) for d in weekdays if not isinstance(d, int) or not 0 <= d <= 6)
    if bad:
        raise ValueError(f"weekdays must be 0 (Monday) to 6 (Sunday), not {', '.join(bad)}")
    return weekdays


def _days_in_month(year: int, month: int) -> int:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return (following - timedelta(days=1)).day


def _anniversary_date(original: date, year: int) -> date:
    """`original`'s month and day in `year`; 29 February is 28 February in other years."""
    return date(year, original.month, min(original.day, _days_in_month(year, original.month)))


def _shift_date(local: datetime, duration: CalendarDuration, text: str) -> datetime:
    """A naive local datetime moved by the calendar part of `duration`, wall time kept."""
    index = local.year * 12 + local.month - 1 + duration.months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ValueError(f"{local.date().isoformat()} plus {text!r} is out of range")
    day = min(local.day, _days_in_month(year, month))
    moved = local.replace(year=year, month=month, day=day)
    try:
        return moved + timedelta(days=duration.days)
    except OverflowError:
        raise ValueError(f"{local.date().isoformat()} plus {text!r} is out of range") from None


def _resolve(local: datetime, tz: ZoneInfo, fold: int) -> datetime:
    """A naive local wall time in `tz` as a UTC instant.

    Ambiguous: the occurrence `fold` picks (0 first, 1 second). Nonexistent (in a
    gap): the instant the gap ends, the first valid instant after it.
    """
    candidate = local.replace(tzinfo=tz, fold=fold).astimezone(UTC)
    if candidate.astimezone(tz).replace(tzinfo=None) == local.replace(fold=0):
        return candidate
    # In a gap fold=0 reads the wall time with the offset from before the transition and
    # fold=1 with the one from after, so the transition lies between the two readings.
    before = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    after = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    before, after = min(before, after), max(before, after)
    offset_after = after.astimezone(tz).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:  # tz transitions fall on whole seconds
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _ceil_quarter(instant: datetime, tz: ZoneInfo) -> datetime:
    """Round up to the next quarter hour of local wall time (unchanged if on one)."""
    offset = instant.astimezone(tz).utcoffset() or timedelta(0)
    wall = instant.replace(microsecond=0) + offset
    if instant.microsecond:
        wall += timedelta(seconds=1)
    seconds = int(wall.timestamp())
    rounded = -(-seconds // QUARTER_HOUR) * QUARTER_HOUR
    return datetime.fromtimestamp(rounded, UTC) - offset


def _merge_busy(
    busy: list[tuple[datetime, datetime]],
) -> tuple[list[datetime], list[datetime]]:
    """Busy intervals sorted and merged: parallel lists of starts and ends, both ascending."""
    intervals: list[tuple[datetime, datetime]] = []
    for n, interval in enumerate(busy):
        try:
            begin, end = interval
        except (TypeError, ValueError):
            raise ValueError(f"busy[{n}] must be a (start, end) pair, not {interval!r}") from None
        _require_aware(begin, f"busy[{n}] start")
        _require_aware(end, f"busy[{n}] end")
        if end < begin:
            raise ValueError(f"busy[{n}] ends ({end.isoformat()}) before it starts")
        if end > begin:
            intervals.append((begin.astimezone(UTC), end.astimezone(UTC)))
    intervals.sort()
    starts: list[datetime] = []
    ends: list[datetime] = []
    for begin, end in intervals:
        if ends and begin <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(begin)
            ends.append(end)
    return starts, ends
