"""Wait rules as UTC instants: the cases a marketer would check by hand.

Amsterdam is CET (UTC+1) in winter and CEST (UTC+2) in summer. In 2025 the
clocks go 02:00 -> 03:00 on Sunday 30 March and 03:00 -> 02:00 on Sunday
26 October (the last Sundays). Every expected instant below is worked out in
the comment beside it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from journeys.calendar import (
    WEEKDAYS,
    add_calendar,
    end_of_quiet_hours,
    first_free_slot,
    instant_of_field,
    next_anniversary,
    next_local_time,
    parse_duration,
    parse_local_time,
)

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
CAIRO = ZoneInfo("Africa/Cairo")
WORKWEEK = frozenset({0, 1, 2, 3, 4})


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- parse_local_time, WEEKDAYS --------------------------------------------------------------


def test_weekday_names() -> None:
    assert WEEKDAYS == {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
    assert date(2025, 3, 7).weekday() == WEEKDAYS["fri"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00", time(9, 0)),
        ("00:00", time(0, 0)),
        ("23:59", time(23, 59)),
        ("17:30", time(17, 30)),
    ],
)
def test_parse_local_time(text: str, expected: time) -> None:
    assert parse_local_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "24:00",
        "09:60",
        "9:00",
        "0900",
        "09:00:00",
        " 09:00",
        "09:00\n",
        "",
        "noon",
        "\u0660\u0669:\u0660\u0660",
    ],
)
def test_parse_local_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_local_time(text)


def test_parse_local_time_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_local_time(900)  # type: ignore[arg-type]


# --- parse_duration, add_calendar ------------------------------------------------------------


def test_parse_duration_parts() -> None:
    d = parse_duration("P1Y2M3W4DT5H6M7S")
    assert (d.months, d.days, d.elapsed) == (14, 25, timedelta(hours=5, minutes=6, seconds=7))
    n = parse_duration("-P1DT2H")
    assert (n.months, n.days, n.elapsed) == (0, -1, -timedelta(hours=2))
    assert parse_duration("PT90M").elapsed == timedelta(minutes=90)
    assert parse_duration("P0D").has_calendar_part is False


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1DT",
        "1D",
        "P1H",
        "PT1D",
        "P1.5D",
        "P-1D",
        "--P1D",
        "+P1D",
        "p1d",
        "P1D ",
        "P1M1Y",
        "P1S",
        "1 day",
        "P\uff11D",
    ],
)
def test_bad_duration_names_the_text(text: str) -> None:
    with pytest.raises(
        ValueError, match=repr(text).replace("\\", "\\\\").replace(".", r"\.").replace("+", r"\+")
    ):
        add_calendar(utc(2025, 1, 1), text, AMS)


def test_add_calendar_one_month_from_31_january_clamps_to_month_end() -> None:
    # 31 Jan 2025 10:00 CET (09:00Z) + P1M = 28 Feb 2025 10:00 CET = 09:00Z.
    assert add_calendar(utc(2025, 1, 31, 9), "P1M", AMS) == utc(2025, 2, 28, 9)
    # 2024 is a leap year: 29 Feb 2024 10:00 CET = 09:00Z.
    assert add_calendar(utc(2024, 1, 31, 9), "P1M", AMS) == utc(2024, 2, 29, 9)
    # 31 Jan + P2M = 31 Mar, no clamping via February: 31 Mar 2025 10:00 CEST = 08:00Z.
    assert add_calendar(utc(2025, 1, 31, 9), "P2M", AMS) == utc(2025, 3, 31, 8)


def test_add_calendar_year_from_29_february() -> None:
    # 29 Feb 2024 12:00 CET (11:00Z) + P1Y = 28 Feb 2025 12:00 CET = 11:00Z; + P4Y = 29 Feb 2028.
    assert add_calendar(utc(2024, 2, 29, 11), "P1Y", AMS) == utc(2025, 2, 28, 11)
    assert add_calendar(utc(2024, 2, 29, 11), "P4Y", AMS) == utc(2028, 2, 29, 11)


def test_add_calendar_day_across_dst_keeps_wall_clock_hours_do_not() -> None:
    # Sat 29 Mar 2025 09:00 CET = 08:00Z. P1D: Sun 30 Mar 09:00 CEST = 07:00Z (23 h later).
    assert add_calendar(utc(2025, 3, 29, 8), "P1D", AMS) == utc(2025, 3, 30, 7)
    # PT24H is elapsed time: 08:00Z the next day, which reads 10:00 CEST.
    assert add_calendar(utc(2025, 3, 29, 8), "PT24H", AMS) == utc(2025, 3, 30, 8)
    # Sat 25 Oct 2025 09:00 CEST = 07:00Z. P1D: Sun 26 Oct 09:00 CET = 08:00Z (25 h later).
    assert add_calendar(utc(2025, 10, 25, 7), "P1D", AMS) == utc(2025, 10, 26, 8)
    # P1W over the change: Mon 24 Mar 09:00 CET (08:00Z) -> Mon 31 Mar 09:00 CEST = 07:00Z.
    assert add_calendar(utc(2025, 3, 24, 8), "P1W", AMS) == utc(2025, 3, 31, 7)


def test_add_calendar_negative() -> None:
    # Mon 31 Mar 2025 09:00 CEST = 07:00Z. -P1D: Sun 30 Mar 09:00 CEST = 07:00Z.
    assert add_calendar(utc(2025, 3, 31, 7), "-P1D", AMS) == utc(2025, 3, 30, 7)
    # -P2D: Sat 29 Mar 09:00 CET = 08:00Z.
    assert add_calendar(utc(2025, 3, 31, 7), "-P2D", AMS) == utc(2025, 3, 29, 8)
    # -P1M from 31 Mar 09:00 CEST: 28 Feb 09:00 CET = 08:00Z.
    assert add_calendar(utc(2025, 3, 31, 7), "-P1M", AMS) == utc(2025, 2, 28, 8)
    # -P1M1D: months first (28 Feb), then the day (27 Feb) 09:00 CET = 08:00Z.
    assert add_calendar(utc(2025, 3, 31, 7), "-P1M1D", AMS) == utc(2025, 2, 27, 8)
    # -PT1H30M is elapsed: 05:30Z.
    assert add_calendar(utc(2025, 3, 31, 7), "-PT1H30M", AMS) == utc(2025, 3, 31, 5, 30)


def test_add_calendar_every_part() -> None:
    # 15 Jan 2025 08:00 CET (07:00Z) + P1Y2M = 15 Mar 2026; + P3W4D = 25 days -> 9 Apr 2026
    # 08:00 CEST = 06:00Z; + PT5H6M7S elapsed = 11:06:07Z.
    assert add_calendar(utc(2025, 1, 15, 7), "P1Y2M3W4DT5H6M7S", AMS) == utc(2026, 4, 9, 11, 6, 7)


def test_add_calendar_into_the_spring_gap_moves_to_the_end_of_the_gap() -> None:
    # Sat 29 Mar 2025 02:30 CET = 01:30Z. P1D -> Sun 30 Mar 02:30, which does not exist;
    # the first instant after the gap is 03:00 CEST = 01:00Z.
    assert add_calendar(utc(2025, 3, 29, 1, 30), "P1D", AMS) == utc(2025, 3, 30, 1)


def test_add_calendar_keeps_the_occurrence_of_an_ambiguous_time() -> None:
    # Sat 25 Oct 2025 02:30 CEST = 00:30Z. P1D -> Sun 26 Oct 02:30, first occurrence (CEST) = 00:30Z.
    assert add_calendar(utc(2025, 10, 25, 0, 30), "P1D", AMS) == utc(2025, 10, 26, 0, 30)
    # 26 Oct 01:30Z is 02:30 CET, the second occurrence: P0D leaves it alone, P1W keeps the
    # wall time (Sun 2 Nov 02:30 CET = 01:30Z) and -P1D gives Sat 25 Oct 02:30 CEST = 00:30Z.
    second = utc(2025, 10, 26, 1, 30)
    assert add_calendar(second, "P0D", AMS) == second
    assert add_calendar(second, "P1W", AMS) == utc(2025, 11, 2, 1, 30)
    assert add_calendar(second, "-P1D", AMS) == utc(2025, 10, 25, 0, 30)


def test_add_calendar_result_is_utc_whatever_the_input_offset() -> None:
    # 09:00+02:00 is 07:00Z; + PT1H = 08:00Z, reported in UTC.
    start = datetime(2025, 6, 2, 9, tzinfo=ZoneInfo("Europe/Amsterdam"))
    result = add_calendar(start, "PT1H", AMS)
    assert result == utc(2025, 6, 2, 8) and result.tzinfo is UTC


def test_add_calendar_rejects_naive_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_calendar(datetime(2025, 1, 1), "P1D", AMS)
    with pytest.raises(ValueError, match="out of range"):
        add_calendar(utc(2025, 1, 1), "P9000Y", AMS)
    with pytest.raises(ValueError, match="out of range"):
        add_calendar(utc(2025, 1, 1), "P999999999D", AMS)


# --- next_local_time -------------------------------------------------------------------------


def test_daily_0900_across_march_dst_change() -> None:
    # Sat 29 Mar 2025 11:00 CET (10:00Z): today's 09:00 has passed, so
    # Sun 30 Mar 09:00 CEST = 07:00Z.
    assert next_local_time(utc(2025, 3, 29, 10), AMS, time(9), None) == utc(2025, 3, 30, 7)
    # Early Saturday, 06:00Z = 07:00 CET: Sat 29 Mar 09:00 CET = 08:00Z.
    assert next_local_time(utc(2025, 3, 29, 6), AMS, time(9), None) == utc(2025, 3, 29, 8)


def test_daily_0900_across_october_dst_change() -> None:
    # Sat 25 Oct 2025 10:00 CEST (08:00Z) -> Sun 26 Oct 09:00 CET = 08:00Z, exactly 24 h later
    # by the UTC clock yet a day of 25 hours.
    assert next_local_time(utc(2025, 10, 25, 8), AMS, time(9), None) == utc(2025, 10, 26, 8)


def test_weekday_rule_on_friday_evening_gives_monday() -> None:
    # Fri 7 Mar 2025 19:00 CET (18:00Z), weekdays only -> Mon 10 Mar 09:00 CET = 08:00Z.
    assert next_local_time(utc(2025, 3, 7, 18), AMS, time(9), WORKWEEK) == utc(2025, 3, 10, 8)


def test_weekday_rule_single_day() -> None:
    # Wed 5 Mar 2025 noon, "Tuesdays 10:00" -> Tue 11 Mar 10:00 CET = 09:00Z.
    tue = frozenset({WEEKDAYS["tue"]})
    assert next_local_time(utc(2025, 3, 5, 11), AMS, time(10), tue) == utc(2025, 3, 11, 9)
    # On Tuesday 11 Mar before 10:00 CET it is that same day.
    assert next_local_time(utc(2025, 3, 11, 8, 59), AMS, time(10), tue) == utc(2025, 3, 11, 9)
    # Just after, a week later: Tue 18 Mar 09:00Z.
    assert next_local_time(utc(2025, 3, 11, 9, 0, 1), AMS, time(10), tue) == utc(2025, 3, 18, 9)


def test_weekday_is_the_local_weekday() -> None:
    # Sun 9 Mar 2025 23:30Z is already Mon 10 Mar 00:30 CET: "Mondays 01:00" is 00:00Z.
    mon = frozenset({0})
    assert next_local_time(utc(2025, 3, 9, 23, 30), AMS, time(1), mon) == utc(2025, 3, 10, 0)


def test_at_or_after_now_to_the_second() -> None:
    # Mon 3 Mar 2025 09:00 CET = 08:00Z. Now exactly then: due now.
    assert next_local_time(utc(2025, 3, 3, 8), AMS, time(9), None) == utc(2025, 3, 3, 8)
    # 300 ms later is the same second: still due now (the instant returned is 08:00:00).
    late = utc(2025, 3, 3, 8).replace(microsecond=300_000)
    assert next_local_time(late, AMS, time(9), None) == utc(2025, 3, 3, 8)
    # One second later it is tomorrow's: Tue 4 Mar 08:00Z.
    assert next_local_time(utc(2025, 3, 3, 8, 0, 1), AMS, time(9), None) == utc(2025, 3, 4, 8)


def test_nonexistent_local_time_moves_to_end_of_gap() -> None:
    # Sun 30 Mar 2025 02:30 Amsterdam does not exist (02:00 -> 03:00): the first valid
    # instant after the gap is 03:00 CEST = 01:00Z.
    assert next_local_time(utc(2025, 3, 29, 12), AMS, time(2, 30), None) == utc(2025, 3, 30, 1)
    # Once that has passed, Mon 31 Mar 02:30 CEST = 00:30Z.
    assert next_local_time(utc(2025, 3, 30, 1, 0, 1), AMS, time(2, 30), None) == utc(
        2025, 3, 31, 0, 30
    )
    # New York, Sun 9 Mar 2025: 02:00 EST -> 03:00 EDT; 02:15 -> 03:00 EDT = 07:00Z.
    assert next_local_time(utc(2025, 3, 8, 12), NYC, time(2, 15), None) == utc(2025, 3, 9, 7)


def test_ambiguous_local_time_uses_first_occurrence() -> None:
    # Sun 26 Oct 2025 02:30 happens twice; the first is 02:30 CEST = 00:30Z.
    assert next_local_time(utc(2025, 10, 25, 12), AMS, time(2, 30), None) == utc(
        2025, 10, 26, 0, 30
    )
    # Between the two (00:45Z = 02:45 CEST): the second occurrence does not count, so
    # Mon 27 Oct 02:30 CET = 01:30Z.
    assert next_local_time(utc(2025, 10, 26, 0, 45), AMS, time(2, 30), None) == utc(
        2025, 10, 27, 1, 30
    )


def test_other_zone_and_non_utc_now() -> None:
    # Now given as 20:00 New York EST (Fri 7 Mar 2025 = Sat 01:00Z); weekdays 08:00 New York
    # -> Mon 10 Mar 08:00 EDT (DST began Sun 9 Mar) = 12:00Z.
    now = datetime(2025, 3, 7, 20, tzinfo=NYC)
    assert next_local_time(now, NYC, time(8), WORKWEEK) == utc(2025, 3, 10, 12)


def test_next_local_time_rejects() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_local_time(datetime(2025, 3, 3, 8), AMS, time(9), None)
    with pytest.raises(ValueError, match="at least one day"):
        next_local_time(utc(2025, 3, 3, 8), AMS, time(9), frozenset())
    with pytest.raises(ValueError, match=r"0 .Monday. to 6"):
        next_local_time(utc(2025, 3, 3, 8), AMS, time(9), frozenset({7}))
    with pytest.raises(ValueError, match="tzinfo"):
        next_local_time(utc(2025, 3, 3, 8), AMS, time(9, tzinfo=UTC), None)


# --- next_anniversary ------------------------------------------------------------------------


def test_birthday_29_february_in_a_non_leap_year_is_28_february() -> None:
    # 10 Jan 2027: 2027 is not a leap year -> 28 Feb 2027 00:00 CET = 27 Feb 23:00Z.
    assert next_anniversary(utc(2027, 1, 10), AMS, date(2000, 2, 29), None, None) == utc(
        2027, 2, 27, 23
    )
    # In 2028 (leap) it is 29 Feb 2028 00:00 CET = 28 Feb 23:00Z.
    assert next_anniversary(utc(2028, 1, 10), AMS, date(2000, 2, 29), None, None) == utc(
        2028, 2, 28, 23
    )


def test_birthday_offset_day_before_at_0900() -> None:
    # Birthday 15 May, -P1D at 09:00: 14 May 2025 09:00 CEST = 07:00Z.
    assert next_anniversary(utc(2025, 4, 1), AMS, date(1990, 5, 15), "-P1D", time(9)) == utc(
        2025, 5, 14, 7
    )
    # 29 Feb birthday, -P1D, non-leap 2027: 28 Feb - 1 day = 27 Feb 09:00 CET = 08:00Z.
    assert next_anniversary(utc(2027, 1, 1), AMS, date(2000, 2, 29), "-P1D", time(9)) == utc(
        2027, 2, 27, 8
    )
    # A week before, -P1W: 8 May 2025 09:00 CEST = 07:00Z.
    assert next_anniversary(utc(2025, 4, 1), AMS, date(1990, 5, 15), "-P1W", time(9)) == utc(
        2025, 5, 8, 7
    )


def test_anniversary_already_passed_today_moves_to_next_year() -> None:
    # 15 May 2025 10:00 CEST (08:00Z): today's 09:00 CEST has passed -> 15 May 2026 09:00
    # CEST = 07:00Z.
    assert next_anniversary(utc(2025, 5, 15, 8), AMS, date(1990, 5, 15), None, time(9)) == utc(
        2026, 5, 15, 7
    )
    # At exactly 09:00 CEST it is due now.
    assert next_anniversary(utc(2025, 5, 15, 7), AMS, date(1990, 5, 15), None, time(9)) == utc(
        2025, 5, 15, 7
    )
    # Default time is local midnight: 15 May 00:00 CEST = 14 May 22:00Z is past on 15 May.
    assert next_anniversary(utc(2025, 5, 15, 8), AMS, date(1990, 5, 15), None, None) == utc(
        2026, 5, 14, 22
    )


def test_shifted_instant_past_but_anniversary_not_yet_moves_to_next_year() -> None:
    # 10 May 2025, birthday 15 May with -P1W at 09:00: 8 May 2025 has passed even though the
    # birthday has not -> 8 May 2026 09:00 CEST = 07:00Z.
    assert next_anniversary(utc(2025, 5, 10), AMS, date(1990, 5, 15), "-P1W", time(9)) == utc(
        2026, 5, 8, 7
    )


def test_offset_crossing_the_year_boundary() -> None:
    # 3 January with -P1W is 27 December of the year before. On 20 Dec 2025 the next one is
    # 27 Dec 2025 (for 3 Jan 2026) 09:00 CET = 08:00Z.
    assert next_anniversary(utc(2025, 12, 20), AMS, date(1980, 1, 3), "-P1W", time(9)) == utc(
        2025, 12, 27, 8
    )
    # On 2 Jan 2026 the 27 Dec 2025 one has passed -> 27 Dec 2026 08:00Z.
    assert next_anniversary(utc(2026, 1, 2), AMS, date(1980, 1, 3), "-P1W", time(9)) == utc(
        2026, 12, 27, 8
    )
    # 15 December plus P1M is 15 January of the next year: on 10 Jan 2026 the next is
    # 15 Jan 2026 (for 15 Dec 2025) 00:00 CET = 14 Jan 23:00Z.
    assert next_anniversary(utc(2026, 1, 10), AMS, date(1980, 12, 15), "P1M", None) == utc(
        2026, 1, 14, 23
    )


def test_anniversary_time_offset_is_elapsed() -> None:
    # 1 June 09:00 CEST minus 2 hours = 07:00 CEST = 05:00Z.
    assert next_anniversary(utc(2025, 1, 1), AMS, date(2010, 6, 1), "-PT2H", time(9)) == utc(
        2025, 6, 1, 5
    )


def test_anniversary_on_dst_days() -> None:
    # Anniversary 30 March at 02:30: in 2025 that wall time does not exist -> 03:00 CEST = 01:00Z.
    assert next_anniversary(utc(2025, 3, 1), AMS, date(2000, 3, 30), None, time(2, 30)) == utc(
        2025, 3, 30, 1
    )
    # 31 March at 02:30 with -P1D lands on the gap day's 02:30 (not the gap end shifted back):
    # 30 Mar 2025 03:00 CEST = 01:00Z.
    assert next_anniversary(utc(2025, 3, 1), AMS, date(2000, 3, 31), "-P1D", time(2, 30)) == utc(
        2025, 3, 30, 1
    )
    # 29 March at 02:30 with P1D likewise; 28 March at 02:30 with P1D is 29 Mar 02:30 CET = 01:30Z.
    assert next_anniversary(utc(2025, 3, 1), AMS, date(2000, 3, 29), "P1D", time(2, 30)) == utc(
        2025, 3, 30, 1
    )
    assert next_anniversary(utc(2025, 3, 1), AMS, date(2000, 3, 28), "P1D", time(2, 30)) == utc(
        2025, 3, 29, 1, 30
    )


def test_anniversary_accepts_a_datetime_field_value() -> None:
    # A birth datetime 1990-05-14T23:30Z is 15 May 01:30 CEST in Amsterdam: the 15th counts.
    born = datetime(1990, 5, 14, 23, 30, tzinfo=UTC)
    assert next_anniversary(utc(2025, 4, 1), AMS, born, None, time(9)) == utc(2025, 5, 15, 7)


def test_anniversary_rejects() -> None:
    with pytest.raises(ValueError, match="'1 day'"):
        next_anniversary(utc(2025, 4, 1), AMS, date(1990, 5, 15), "1 day", None)
    with pytest.raises(ValueError, match="aware"):
        next_anniversary(datetime(2025, 4, 1), AMS, date(1990, 5, 15), None, None)
    with pytest.raises(ValueError, match="in range"):
        next_anniversary(utc(9999, 12, 30), AMS, date(1990, 5, 15), None, None)


# --- instant_of_field ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Date: local midnight. 30 Mar 2025 00:00 CET = 29 Mar 23:00Z.
        ("2025-03-30", utc(2025, 3, 29, 23)),
        # Summer date: 1 Jul 00:00 CEST = 30 Jun 22:00Z.
        ("2025-07-01", utc(2025, 6, 30, 22)),
        # Naive date-time is Amsterdam wall time: 09:00 CEST = 07:00Z.
        ("2025-07-01T09:00:00", utc(2025, 7, 1, 7)),
        ("2025-07-01T09:00", utc(2025, 7, 1, 7)),
        ("2025-07-01 09:00", utc(2025, 7, 1, 7)),
        # With an offset it is that instant.
        ("2025-07-01T09:00:00+00:00", utc(2025, 7, 1, 9)),
        ("2025-07-01T09:00:00Z", utc(2025, 7, 1, 9)),
        ("2025-07-01T09:00:00-05:00", utc(2025, 7, 1, 14)),
        ("2025-07-01T09:00:00.250+02:00", utc(2025, 7, 1, 7).replace(microsecond=250_000)),
        # Surrounding blanks from a CSV import are tolerated.
        ("  2025-07-01  ", utc(2025, 6, 30, 22)),
        # Naive wall time in the spring gap: first instant after it, 03:00 CEST = 01:00Z.
        ("2025-03-30T02:30", utc(2025, 3, 30, 1)),
        # Ambiguous: first occurrence, 02:30 CEST = 00:30Z.
        ("2025-10-26T02:30", utc(2025, 10, 26, 0, 30)),
        (date(2025, 7, 1), utc(2025, 6, 30, 22)),
        (datetime(2025, 7, 1, 9), utc(2025, 7, 1, 7)),
        (datetime(2025, 7, 1, 9, tzinfo=NYC), utc(2025, 7, 1, 13)),
    ],
)
def test_instant_of_field(value: str | date | datetime, expected: datetime) -> None:
    result = instant_of_field(value, AMS)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    ["", "tomorrow", "2025-13-01", "2025-02-30", "01/07/2025", "2025-07-01T25:00", "1751360400"],
)
def test_instant_of_field_rejects_text(value: str) -> None:
    with pytest.raises(ValueError, match=f"field value {value!r} is not an ISO 8601 date"):
        instant_of_field(value, AMS)


@pytest.mark.parametrize("value", [None, 1751360400, 1.5, True, ["2025-07-01"]])
def test_instant_of_field_rejects_other_types(value: object) -> None:
    with pytest.raises(ValueError, match="is not a date or date-time"):
        instant_of_field(value, AMS)  # type: ignore[arg-type]


# --- first_free_slot -------------------------------------------------------------------------


def slot(
    now: datetime,
    minutes: int,
    busy: list[tuple[datetime, datetime]] | None = None,
    tz: ZoneInfo = AMS,
    **kwargs: object,
) -> datetime:
    return first_free_slot(now, tz, timedelta(minutes=minutes), busy or [], **kwargs)  # type: ignore[arg-type]


def test_slot_now_rounded_up_to_quarter_hour() -> None:
    # Mon 3 Mar 2025 09:07 CET (08:07Z) -> 09:15 CET = 08:15Z.
    assert slot(utc(2025, 3, 3, 8, 7), 30) == utc(2025, 3, 3, 8, 15)
    # On a quarter hour (to the second) it stays: 09:30 CET = 08:30Z.
    assert slot(utc(2025, 3, 3, 8, 30), 30) == utc(2025, 3, 3, 8, 30)
    assert slot(utc(2025, 3, 3, 8, 30).replace(microsecond=999_999), 30) == utc(2025, 3, 3, 8, 30)
    # 09:30:01 -> 09:45 CET = 08:45Z.
    assert slot(utc(2025, 3, 3, 8, 30, 1), 30) == utc(2025, 3, 3, 8, 45)


def test_slot_before_and_after_working_hours() -> None:
    # Mon 3 Mar 07:00 CET (06:00Z) -> 09:00 CET = 08:00Z.
    assert slot(utc(2025, 3, 3, 6), 30) == utc(2025, 3, 3, 8)
    # Mon 17:30 CET (16:30Z) -> Tue 4 Mar 09:00 CET = 08:00Z.
    assert slot(utc(2025, 3, 3, 16, 30), 30) == utc(2025, 3, 4, 8)


def test_friday_1645_with_30_minutes_goes_to_monday() -> None:
    # Fri 7 Mar 2025 16:45 CET (15:45Z): 16:45 + 30 min ends 17:15, after 17:00 ->
    # Mon 10 Mar 09:00 CET = 08:00Z.
    assert slot(utc(2025, 3, 7, 15, 45), 30) == utc(2025, 3, 10, 8)
    # Fri 16:30 CET (15:30Z): 16:30-17:00 fits exactly.
    assert slot(utc(2025, 3, 7, 15, 30), 30) == utc(2025, 3, 7, 15, 30)


def test_weekend_goes_to_monday() -> None:
    # Sat 8 Mar 2025 noon -> Mon 10 Mar 09:00 CET = 08:00Z.
    assert slot(utc(2025, 3, 8, 11), 60) == utc(2025, 3, 10, 8)


def test_busy_all_day_pushes_to_next_day() -> None:
    # Mon 3 Mar 09:00-17:00 CET busy (08:00Z-16:00Z) -> Tue 4 Mar 09:00 CET = 08:00Z.
    busy = [(utc(2025, 3, 3, 8), utc(2025, 3, 3, 16))]
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 4, 8)
    # Busy until 16:45 CET: 16:45-17:00 is too short for 30 min -> Tue 09:00.
    busy = [(utc(2025, 3, 3, 8), utc(2025, 3, 3, 15, 45))]
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 4, 8)
    # ... but a 15 min slot fits at 16:45 CET = 15:45Z.
    assert slot(utc(2025, 3, 3, 6), 15, busy) == utc(2025, 3, 3, 15, 45)


def test_busy_intervals_unsorted_and_overlapping() -> None:
    # Mon 3 Mar (CET, Z = local - 1h). Busy 09:00-10:00, 09:30-10:20 (overlap), 10:45-12:00,
    # given out of order. Free 10:20-10:45 is on the grid 10:30-10:45: too short for 30 min.
    # Next: 12:00 CET = 11:00Z.
    busy = [
        (utc(2025, 3, 3, 9, 45), utc(2025, 3, 3, 11)),
        (utc(2025, 3, 3, 8), utc(2025, 3, 3, 9)),
        (utc(2025, 3, 3, 8, 30), utc(2025, 3, 3, 9, 20)),
    ]
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 3, 11)
    # A 15 min slot fits at 10:30 CET = 09:30Z (10:20 rounds up to the grid).
    assert slot(utc(2025, 3, 3, 6), 15, busy) == utc(2025, 3, 3, 9, 30)


def test_busy_end_off_grid_rounds_up_and_touching_is_free() -> None:
    # Busy 09:00-10:10 CET -> 10:15 CET = 09:15Z.
    busy = [(utc(2025, 3, 3, 8), utc(2025, 3, 3, 9, 10))]
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 3, 9, 15)
    # Busy 09:30-10:00 CET: 09:00-09:30 touches it and is free = 08:00Z.
    busy = [(utc(2025, 3, 3, 8, 30), utc(2025, 3, 3, 9))]
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 3, 8)
    # 09:00-09:45 would overlap it by 15 min: 45 min goes to 10:00 CET = 09:00Z.
    assert slot(utc(2025, 3, 3, 6), 45, busy) == utc(2025, 3, 3, 9)


def test_busy_interval_spanning_days_and_empty_ones() -> None:
    # Busy Mon 3 Mar 12:00 CET to Wed 5 Mar 11:00 CET; now Mon 13:00 CET -> Wed 11:00 CET = 10:00Z.
    busy = [(utc(2025, 3, 3, 11), utc(2025, 3, 5, 10)), (utc(2025, 3, 5, 10), utc(2025, 3, 5, 10))]
    assert slot(utc(2025, 3, 3, 12), 60, busy) == utc(2025, 3, 5, 10)


def test_busy_in_other_offsets() -> None:
    # Busy given in New York time: Mon 3 Mar 03:00-11:00 EST = 08:00Z-16:00Z = 09:00-17:00 CET.
    busy = [(datetime(2025, 3, 3, 3, tzinfo=NYC), datetime(2025, 3, 3, 11, tzinfo=NYC))]
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 4, 8)


def test_slot_across_dst() -> None:
    # Fri 28 Mar 2025 busy all day (09:00-17:00 CET = 08:00Z-16:00Z); Monday 31 Mar is summer
    # time: 09:00 CEST = 07:00Z.
    busy = [(utc(2025, 3, 28, 8), utc(2025, 3, 28, 16))]
    assert slot(utc(2025, 3, 28, 7), 60, busy) == utc(2025, 3, 31, 7)
    # And back: Fri 24 Oct 2025 busy 09:00-17:00 CEST (07:00Z-15:00Z) -> Mon 27 Oct 09:00 CET
    # = 08:00Z.
    busy = [(utc(2025, 10, 24, 7), utc(2025, 10, 24, 15))]
    assert slot(utc(2025, 10, 24, 6), 60, busy) == utc(2025, 10, 27, 8)


def test_slot_on_a_weekday_with_a_clock_change_in_working_hours() -> None:
    # Cairo moved 00:00 -> 01:00 on Friday 28 Apr 2023. Working hours 00:00-04:00 that day run
    # 01:00 EEST (= 27 Apr 22:00Z) to 04:00 EEST (01:00Z): three hours, and 3 h fits exactly.
    kwargs: dict[str, Any] = {"day_start": time(0), "day_end": time(4)}
    assert slot(utc(2023, 4, 27, 12), 180, tz=CAIRO, **kwargs) == utc(2023, 4, 27, 22)
    # 3.5 h does not fit that day; the next weekday is Mon 1 May 00:00 EEST = 30 Apr 21:00Z.
    assert slot(utc(2023, 4, 27, 12), 210, tz=CAIRO, **kwargs) == utc(2023, 4, 30, 21)


def test_slot_custom_hours() -> None:
    # 08:30-12:00, now Mon 3 Mar 06:00Z (07:00 CET) -> 08:30 CET = 07:30Z.
    kwargs: dict[str, Any] = {"day_start": time(8, 30), "day_end": time(12)}
    assert slot(utc(2025, 3, 3, 6), 60, **kwargs) == utc(2025, 3, 3, 7, 30)


def test_slot_errors() -> None:
    now = utc(2025, 3, 3, 6)
    with pytest.raises(ValueError, match="longer than a working day"):
        slot(now, 8 * 60 + 15)
    assert slot(now, 8 * 60) == utc(2025, 3, 3, 8)  # a full working day is fine
    with pytest.raises(ValueError, match="positive"):
        slot(now, 0)
    with pytest.raises(ValueError, match="before day_end"):
        slot(now, 30, day_start=time(17), day_end=time(9))
    with pytest.raises(ValueError, match="aware"):
        slot(now, 30, [(datetime(2025, 3, 3, 9), datetime(2025, 3, 3, 10))])
    with pytest.raises(ValueError, match="before it starts"):
        slot(now, 30, [(utc(2025, 3, 3, 10), utc(2025, 3, 3, 9))])
    with pytest.raises(ValueError, match="aware"):
        slot(datetime(2025, 3, 3, 6), 30)


def test_nothing_free_within_horizon() -> None:
    # Busy for two weeks; with a 7-day horizon nothing is free.
    busy = [(utc(2025, 3, 1), utc(2025, 3, 15))]
    with pytest.raises(ValueError, match="no free 0:30:00 slot"):
        slot(utc(2025, 3, 3, 6), 30, busy, horizon_days=7)
    # With the default horizon: Mon 17 Mar 09:00 CET = 08:00Z.
    assert slot(utc(2025, 3, 3, 6), 30, busy) == utc(2025, 3, 17, 8)
    # The horizon counts from now (Mon 3 Mar 08:15Z): busy until Mon 10 Mar 09:30 CET
    # (08:30Z), so the first start is 08:30Z, 15 minutes past a 7-day horizon.
    busy = [(utc(2025, 3, 3, 8, 15), utc(2025, 3, 10, 8, 30))]
    with pytest.raises(ValueError, match="within 7 days"):
        slot(utc(2025, 3, 3, 8, 15), 30, busy, horizon_days=7)
    assert slot(utc(2025, 3, 3, 8, 15), 30, busy, horizon_days=8) == utc(2025, 3, 10, 8, 30)


# --- end_of_quiet_hours ----------------------------------------------------------------------


def quiet(now: datetime, start: str = "21:00", end: str = "08:00") -> datetime | None:
    return end_of_quiet_hours(now, AMS, parse_local_time(start), parse_local_time(end))


def test_quiet_hours_past_midnight() -> None:
    # Wed 5 Mar 2025, CET (UTC+1).
    assert quiet(utc(2025, 3, 5, 19, 59)) is None  # 20:59 local: still allowed
    assert quiet(utc(2025, 3, 5, 20)) == utc(2025, 3, 6, 7)  # 21:00: until Thu 08:00 = 07:00Z
    assert quiet(utc(2025, 3, 5, 23, 30)) == utc(2025, 3, 6, 7)  # 00:30 Thu local
    assert quiet(utc(2025, 3, 6, 6, 59, 59)) == utc(2025, 3, 6, 7)  # 07:59:59
    assert quiet(utc(2025, 3, 6, 7)) is None  # 08:00: sends again


def test_quiet_hours_within_a_day() -> None:
    # 12:00-14:00 local, a lunch break; CEST (UTC+2) on 2 June 2025.
    assert quiet(utc(2025, 6, 2, 9, 59), "12:00", "14:00") is None
    assert quiet(utc(2025, 6, 2, 10), "12:00", "14:00") == utc(2025, 6, 2, 12)
    assert quiet(utc(2025, 6, 2, 12), "12:00", "14:00") is None


def test_quiet_hours_over_a_clock_change() -> None:
    # Spring forward, Sun 30 Mar 2025: 02:00 CET becomes 03:00 CEST. Quiet until 02:30
    # (a time that does not exist that night) ends at the first instant after the gap.
    assert quiet(utc(2025, 3, 29, 23), "22:00", "02:30") == utc(2025, 3, 30, 1)  # 03:00 CEST
    # The night has an hour less: 21:00 CET to 08:00 CEST is ten hours.
    assert quiet(utc(2025, 3, 29, 20)) == utc(2025, 3, 30, 6)
    # Fall back, Sun 26 Oct 2025: 03:00 CEST becomes 02:00 CET. In the first 02:30
    # (CEST, 00:30Z) quiet hours until 02:45 end at its first occurrence (00:45Z).
    assert quiet(utc(2025, 10, 26, 0, 30), "22:00", "02:45") == utc(2025, 10, 26, 0, 45)
    # In the second 02:30 (CET, 01:30Z) they end at the second 02:45 (01:45Z), not a day on.
    assert quiet(utc(2025, 10, 26, 1, 30), "22:00", "02:45") == utc(2025, 10, 26, 1, 45)
    # And 21:00 CEST to 08:00 CET is twelve hours.
    assert quiet(utc(2025, 10, 25, 19)) == utc(2025, 10, 26, 7)


def test_quiet_hours_need_a_span() -> None:
    with pytest.raises(ValueError, match="same time"):
        quiet(utc(2025, 3, 5, 20), "21:00", "21:00")
