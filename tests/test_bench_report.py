"""The benchmark's pure logic: percentiles, ratios, the figure check, the table,
and the load generators' bookkeeping. Nothing here is timed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.load import closed_loop, open_loop
from bench.report import (
    cpu_rows,
    latency_summary,
    markdown_table,
    meets,
    missing_figures,
    pair_figures,
    percentile,
    rate,
    ratio,
    render,
    table_rows,
)
from bench.run import plan


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(range(101)), 99) == 99.0


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.010, 0.020, 0.030])
    assert summary["count"] == 3
    assert summary["p50_ms"] == 20.0
    assert summary["max_ms"] == 30.0
    assert summary["mean_ms"] == 20.0
    assert latency_summary([])["p99_ms"] is None


def test_ratio_rate_and_targets() -> None:
    assert ratio(90.0, 100.0) == 0.9
    assert ratio(None, 100.0) is None
    assert ratio(50.0, 0.0) is None
    assert rate(100, 2.0) == 50.0
    assert rate(0, 2.0) is None
    assert meets(0.9, 0.9) is True
    assert meets(0.89, 0.9) is False
    assert meets(None, 0.9) is None
    assert meets(40.0, 50.0, at_most=True) is True
    assert pair_figures(50.0, 45.0, 0.9) == {
        "floor": 50.0,
        "product": 45.0,
        "ratio": 0.9,
        "target_ratio": 0.9,
        "met": True,
    }


def _complete() -> dict[str, Any]:
    pairs = {
        "enrol": {**pair_figures(200.0, 100.0, 0.9), "product_bulk": 150.0, "ratio_bulk": 0.75},
        "events": {
            **pair_figures(300.0, 150.0, 0.9),
            "latency": {"floor": latency_summary([0.1]), "product": latency_summary([0.2])},
            "paced": {
                "rate": 100.0,
                "floor": latency_summary([0.05]),
                "product": latency_summary([0.06]),
                "target_p99_ms": 50.0,
                "met": False,
            },
        },
        "steps": pair_figures(20.0, 15.0, 0.7),
        "mail": {**pair_figures(400.0, 100.0, 0.5), "floor_new_connection": 300.0},
        "bulk": {**pair_figures(180.0, 171.0, 0.9), "n": 20_000},
        "recurring": {**pair_figures(700.0, 290.0, 0.8), "n": 20_000},
    }
    idle = {
        "levels": [
            {"participants": 1000, "worker_rss_bytes": 200e6},
            {"participants": 20000, "worker_rss_bytes": 210e6},
        ],
        "per_participant": {
            "worker_rss_bytes": 0.5,
            "temporal_db_bytes": 20e3,
            "postgres_bytes": 300.0,
        },
        "rss_ratio": 1.05,
        "met": True,
        "history_events_per_step": 5.0,
    }
    histories = {"journey: wait": {"events": 5, "steps": 1, "events_per_step": 5.0}}
    count = {"contacts": 1_000_000, "median_ms": 420.0, "target_ms": 1000.0, "met": True}
    console = {
        "participants": 10_000,
        "pages": {"journey graph": {"p50_ms": 80.0, "p90_ms": 250.0, "first_ms": 612.0}},
        "worst_p90_ms": 250.0,
        "target_ms": 200.0,
        "met": False,
    }
    return {
        "console": console,
        "concurrency": 32,
        "pairs": pairs,
        "idle": idle,
        "histories": histories,
        "selection_count": count,
    }


def test_missing_figures_names_what_produced_nothing() -> None:
    result = _complete()
    assert missing_figures(result) == []
    result["pairs"]["steps"]["product"] = None
    del result["pairs"]["mail"]
    result["idle"] = {}
    del result["selection_count"]
    del result["console"]
    assert missing_figures(result) == [
        "steps.product",
        "mail.floor",
        "mail.product",
        "console",
        "idle",
        "selection_count",
    ]


def test_a_run_of_some_pairs_misses_only_their_figures() -> None:
    result: dict[str, Any] = {"pairs": {"bulk": pair_figures(180.0, None, 0.9)}}
    assert missing_figures(result, ["bulk"]) == ["bulk.product"]
    assert missing_figures(result, ["console"]) == ["console"]
    result["console"] = {"worst_p90_ms": 120.0}
    assert missing_figures(result, ["console", "bulk"]) == ["bulk.product"]


def test_a_slow_figure_is_not_a_missing_one() -> None:
    result = _complete()
    result["pairs"]["enrol"]["product"] = 0.5  # far below target, but a figure
    assert missing_figures(result) == []


def test_table_has_every_pair_and_the_verdicts() -> None:
    result = _complete()
    rows = table_rows(result)
    assert {r[0] for r in rows} == {
        "enrol",
        "events",
        "steps",
        "mail",
        "bulk",
        "recurring",
        "count",
        "console",
        "idle",
    }
    console = next(r for r in rows if r[0] == "console")
    assert console[3:] == ["80.0 / 250; 612", "", "< 200 ms", "**no**"]
    recurring = next(r for r in rows if r[0] == "recurring")
    assert recurring[1:] == [
        "messages/s, one recurring run to 20,000 recipients",
        "700",
        "290",
        "0.41",
        ">= 0.8",
        "**no**",
    ]
    bulk = next(r for r in rows if r[0] == "bulk")
    assert bulk[1:] == [
        "enrolments/s, a selection of 20,000 by one operation",
        "180",
        "171",
        "0.95",
        ">= 0.9",
        "yes",
    ]
    count = next(r for r in rows if r[0] == "count")
    assert count[1] == "ms to count a one-field query over 1,000,000 contacts"
    assert count[3] == "420" and count[6] == "yes"
    enrol = rows[0]
    assert enrol[:5] == ["enrol", "enrolments/s, single calls", "200", "100", "0.50"]
    assert enrol[6] == "**no**"
    steps = next(r for r in rows if r[0] == "steps")
    assert steps[4:] == ["0.75", ">= 0.7", "yes"]
    paced = next(r for r in rows if "hits/s" in r[1] and r[1].startswith("p50"))
    assert paced[3] == "60.0 / 60.0" and paced[6] == "**no**"
    idle = next(r for r in rows if r[1].startswith("worker RSS, "))
    assert idle[3] == "200.0 MB -> 210.0 MB" and idle[6] == "yes"
    text = render(result)
    assert "events per step" in text and "journey: wait" in text


def test_cpu_rows_sum_each_process_per_operation() -> None:
    result = _complete()
    result["pairs"]["enrol"]["floor_detail"] = {
        "cpu_ms_per_op": {"temporal": 99.0},
        "cpu_ms_per_op_with_followup": {"temporal": 15.0, "floor_worker": 6.0, "bench": 1.5},
    }
    result["pairs"]["mail"]["product_detail"] = {
        "cpu_ms_per_op": {"mail_client": 2.5, "postgres": 1.0, "sink": 1.5, "others": 3.0}
    }
    rows = cpu_rows(result)
    assert rows[0] == ["enrol floor", "15.0", "6.0", "-", "-", "-", "1.5", "22.5"]
    assert rows[1] == ["mail product", "-", "-", "-", "1.0", "1.5", "2.5", "5.0"]
    assert "client" in render(result)


def test_table_of_an_empty_result_still_renders() -> None:
    text = render({"pairs": {}, "idle": {}})
    assert "enrolments/s" in text and "-" in text


def test_markdown_table_pads_columns() -> None:
    lines = markdown_table(("a", "long header"), [["x", "1"], ["wide cell", "2"]]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("|---")


def test_plan_sizes() -> None:
    quick, default = plan(True), plan(False)
    assert quick.n < default.n
    assert quick.idle_levels[1] < default.idle_levels[1] == 20_000
    assert plan(False, n=123, concurrency=7).n == 123
    assert plan(False, n=123, concurrency=7).concurrency == 7
    assert (quick.bulk_n, default.bulk_n, plan(False, bulk_n=100_000).bulk_n) == (
        2_000,
        20_000,
        100_000,
    )
    assert default.count_n == 1_000_000


async def test_closed_loop_runs_each_index_once_within_the_concurrency() -> None:
    seen: list[int] = []
    in_flight = peak = 0

    async def op(i: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        seen.append(i)
        in_flight -= 1
        if i == 3:
            raise RuntimeError("boom")

    result = await closed_loop(20, 4, op)
    assert sorted(seen) == list(range(20))
    assert peak <= 4
    assert result.ok == 19 and result.errors == 1
    assert result.first_error == "RuntimeError: boom"
    assert result.summary()["latency"]["count"] == 19


async def test_open_loop_starts_every_operation() -> None:
    seen: set[int] = set()

    async def op(i: int) -> None:
        seen.add(i)

    result = await open_loop(50, 100_000.0, op)
    assert seen == set(range(50))
    assert result.ok == 50 and result.errors == 0
