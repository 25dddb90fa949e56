"""Pure helpers of the benchmark: percentiles, ratios, targets, the table and
the check that every pair produced a figure. No I/O beyond `write_json`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PAIRS = ("enrol", "events", "steps", "mail", "bulk", "recurring")

# Product figure / floor figure that each pair should reach (from the issue).
RATIO_TARGETS = {
    "enrol": 0.9,
    "events": 0.9,
    "steps": 0.7,
    "mail": 0.5,
    "bulk": 0.9,
    "recurring": 0.8,
}
TRACKING_P99_TARGET_MS = 50.0
# From a click's hit to its run having the event (the dispatcher's signal returned).
DELIVERY_P99_TARGET_MS = 100.0
TRACKING_RATE = 100.0
RSS_GROWTH_TARGET = 0.2


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linearly interpolated between ranks; None if empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Latencies given in seconds, summarised in milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "count": len(seconds),
        "mean_ms": ms(sum(seconds) / len(seconds)) if seconds else None,
        "p50_ms": ms(percentile(seconds, 50)),
        "p90_ms": ms(percentile(seconds, 90)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds)) if seconds else None,
    }


def ratio(product: float | None, floor: float | None) -> float | None:
    """product / floor, rounded; None when either figure is missing or the floor is zero."""
    if product is None or floor is None or floor <= 0:
        return None
    return round(product / floor, 3)


def rate(count: int, seconds: float) -> float | None:
    """Operations per second; None when nothing was done or no time passed."""
    if count <= 0 or seconds <= 0:
        return None
    return round(count / seconds, 2)


def meets(value: float | None, target: float, *, at_most: bool = False) -> bool | None:
    """Whether a figure meets its target; None when there is no figure."""
    if value is None:
        return None
    return value <= target if at_most else value >= target


def pair_figures(
    floor: float | None, product: float | None, target: float | None
) -> dict[str, Any]:
    """The common head of every pair: both figures, their ratio and the verdict."""
    r = ratio(product, floor)
    return {
        "floor": floor,
        "product": product,
        "ratio": r,
        "target_ratio": target,
        "met": None if target is None else meets(r, target),
    }


def missing_figures(result: dict[str, Any], only: list[str] | None = None) -> list[str]:
    """What produced no figure: pairs without floor or product, or an empty idle section
    (of the pairs in `only`, when only some ran)."""
    missing = []
    pairs = result.get("pairs") or {}
    for name in only or PAIRS:
        if name == "console":
            continue  # no floor: its own figures, below
        pair = pairs.get(name) or {}
        for side in ("floor", "product"):
            if not isinstance(pair.get(side), (int, float)):
                missing.append(f"{name}.{side}")
    console = result.get("console") or {}
    if (not only or "console" in only) and not isinstance(
        console.get("worst_p90_ms"), (int, float)
    ):
        missing.append("console")
    if only:
        return missing
    idle = result.get("idle") or {}
    per = idle.get("per_participant") or {}
    if not any(isinstance(v, (int, float)) for v in per.values()):
        missing.append("idle")
    if not isinstance((result.get("selection_count") or {}).get("median_ms"), (int, float)):
        missing.append("selection_count")
    return missing


# --- the table ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _latency_pair(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("p50_ms") is None:
        return "-"
    return f"{_num(summary['p50_ms'])} / {_num(summary['p99_ms'])}"


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The rows of the summary table: pair, figure, floor, product, ratio, target, met."""
    pairs = result.get("pairs") or {}
    rows: list[list[str]] = []

    def ratio_row(name: str, label: str, floor_key: str, product_key: str, ratio_key: str) -> None:
        pair = pairs.get(name) or {}
        target = pair.get("target_ratio")
        r = pair.get(ratio_key)
        rows.append(
            [
                name,
                label,
                _num(pair.get(floor_key)),
                _num(pair.get(product_key)),
                _ratio_text(r),
                "-" if target is None else f">= {target}",
                _verdict(meets(r, target) if target is not None else None),
            ]
        )

    ratio_row("enrol", "enrolments/s, single calls", "floor", "product", "ratio")
    if (pairs.get("enrol") or {}).get("product_bulk") is not None:
        ratio_row("enrol", "enrolments/s, one bulk call", "floor", "product_bulk", "ratio_bulk")
    ratio_row("events", "signals/s (clicks delivered to their runs/s)", "floor", "product", "ratio")
    events = pairs.get("events") or {}
    latency = events.get("latency") or {}
    rows.append(
        [
            "events",
            f"p50 / p99 ms, closed loop x{result.get('concurrency', '?')}",
            _latency_pair(latency.get("floor")),
            _latency_pair(latency.get("product")),
            "",
            "",
            "",
        ]
    )
    paced = events.get("paced") or {}
    rows.append(
        [
            "events",
            f"p50 / p99 ms at {_num(paced.get('rate'), 0)} hits/s",
            _latency_pair(paced.get("floor")),
            _latency_pair(paced.get("product")),
            "",
            f"p99 < {_num(paced.get('target_p99_ms'), 0)} ms",
            _verdict(paced.get("met")),
        ]
    )
    if paced.get("to_workflow") is not None:
        rows.append(
            [
                "events",
                f"p50 / p99 ms from hit to run, at {_num(paced.get('rate'), 0)} hits/s",
                "",
                _latency_pair(paced.get("to_workflow")),
                "",
                f"p99 < {_num(paced.get('to_workflow_target_p99_ms'), 0)} ms",
                _verdict(paced.get("to_workflow_met")),
            ]
        )
    ratio_row("steps", "completions/s", "floor", "product", "ratio")
    steps = pairs.get("steps") or {}
    if steps.get("product_two_workers") is not None:
        rows.append(
            [
                "steps",
                "completions/s, two worker processes against one",
                _num(steps.get("product")),
                _num(steps.get("product_two_workers")),
                _ratio_text(steps.get("two_workers_gain")),
                "",
                "",
            ]
        )
    ratio_row("mail", "messages/s (floor: open connections)", "floor", "product", "ratio")
    mail = pairs.get("mail") or {}
    if mail.get("floor_new_connection") is not None:
        rows.append(
            [
                "mail",
                "messages/s, floor with a new connection per message",
                _num(mail.get("floor_new_connection")),
                _num(mail.get("product")),
                _ratio_text(ratio(mail.get("product"), mail.get("floor_new_connection"))),
                "",
                "",
            ]
        )

    bulk = pairs.get("bulk") or {}
    if bulk:
        ratio_row(
            "bulk",
            f"enrolments/s, a selection of {bulk.get('n', '?'):,} by one operation",
            "floor",
            "product",
            "ratio",
        )
    recurring = pairs.get("recurring") or {}
    if recurring:
        ratio_row(
            "recurring",
            f"messages/s, one recurring run to {recurring.get('n', '?'):,} recipients",
            "floor",
            "product",
            "ratio",
        )
    count = result.get("selection_count") or {}
    if count:
        rows.append(
            [
                "count",
                f"ms to count a one-field query over {count.get('contacts', 0):,} contacts",
                "",
                _num(count.get("median_ms")),
                "",
                f"< {_num(count.get('target_ms'), 0)} ms at 1M",
                _verdict(count.get("met")),
            ]
        )
    console = result.get("console") or {}
    cold = console.get("first_view") or {}
    if cold:
        rows.append(
            [
                "console",
                "ms, first view of the graph: the page; its numbers",
                "",
                f"{_num(cold.get('page_ms'))}; {_num(cold.get('numbers_ms'))}",
                "",
                "",
                "",
            ]
        )
    for label, page in (console.get("pages") or {}).items():
        rows.append(
            [
                "console",
                f"ms, {label} page, {console.get('participants', 0):,} in the journey "
                "(p50 / p90; first)",
                "",
                f"{_num(page.get('p50_ms'))} / {_num(page.get('p90_ms'))}; "
                f"{_num(page.get('first_ms'))}",
                "",
                f"< {_num(console.get('target_ms'), 0)} ms",
                _verdict((page.get("p90_ms") or 0) < (console.get("target_ms") or 0)),
            ]
        )
    idle = result.get("idle") or {}
    levels = idle.get("levels") or []
    per = idle.get("per_participant") or {}
    if len(levels) >= 2:
        first, last = levels[0], levels[-1]
        rows.append(
            [
                "idle",
                f"worker RSS, {first['participants']:,} -> {last['participants']:,} sleeping",
                "",
                f"{_bytes(first.get('worker_rss_bytes'))} -> "
                f"{_bytes(last.get('worker_rss_bytes'))}",
                _ratio_text(idle.get("rss_ratio")),
                f"<= {1 + RSS_GROWTH_TARGET:.2f}",
                _verdict(idle.get("met")),
            ]
        )
    for key, label in (
        ("worker_rss_bytes", "worker RSS per sleeping participant"),
        ("temporal_db_bytes", "Temporal database per sleeping participant"),
        ("postgres_bytes", "PostgreSQL per sleeping participant"),
    ):
        if key in per:
            rows.append(["idle", label, "", _bytes(per.get(key)), "", "", ""])
    if idle.get("history_events_per_step") is not None:
        rows.append(
            [
                "idle",
                "history events per journey step",
                "",
                _num(idle.get("history_events_per_step")),
                "",
                "",
                "",
            ]
        )
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table with padded columns, readable in a terminal and in Markdown."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


SUMMARY_HEADER = ("pair", "figure", "floor", "product", "ratio", "target", "met")
HISTORY_HEADER = ("workflow", "history events", "journey steps", "events per step")


def history_rows(histories: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, h in histories.items():
        rows.append(
            [
                name,
                _num(h.get("events"), 0),
                _num(h.get("steps"), 0),
                _num(h.get("events_per_step")),
            ]
        )
    return rows


CPU_HEADER = ("side", "Temporal", "worker", "API", "PostgreSQL", "sink", "client", "total")
# Process names in the JSON, per column; the client is the bench itself or a mail side.
_CPU_COLUMNS = (
    ("temporal",),
    ("worker", "floor_worker"),
    ("api",),
    ("postgres",),
    ("sink",),
    ("bench", "mail_client"),
)
_CPU_SIDES = (
    ("enrol", "floor_detail", "enrol floor"),
    ("enrol", "product_detail", "enrol product, single"),
    ("enrol", "product_bulk_detail", "enrol product, bulk"),
    ("events", "floor_detail", "events floor"),
    ("events", "product_detail", "events product"),
    ("steps", "floor_detail", "steps floor"),
    ("steps", "product_detail", "steps product"),
    ("mail", "floor_detail", "mail floor"),
    ("mail", "product_detail", "mail product"),
)


def cpu_rows(result: dict[str, Any]) -> list[list[str]]:
    """CPU milliseconds per operation in each process, follow-up work included."""
    rows = []
    pairs = result.get("pairs") or {}
    for pair, key, label in _CPU_SIDES:
        detail = (pairs.get(pair) or {}).get(key) or {}
        per_op = detail.get("cpu_ms_per_op_with_followup") or detail.get("cpu_ms_per_op")
        if not per_op:
            continue
        cells = [sum(per_op.get(name) or 0.0 for name in names) for names in _CPU_COLUMNS]
        rows.append([label, *(_num(c) if c else "-" for c in cells), _num(sum(cells))])
    return rows


def render(result: dict[str, Any]) -> str:
    """The summary, CPU and history tables as Markdown text."""
    parts = [markdown_table(SUMMARY_HEADER, table_rows(result))]
    cpu = cpu_rows(result)
    if cpu:
        parts.append(markdown_table(CPU_HEADER, cpu))
    histories = result.get("histories") or {}
    if histories:
        parts.append(markdown_table(HISTORY_HEADER, history_rows(histories)))
    return "\n\n".join(parts)


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.report RESULT.json ...` prints the tables of earlier runs."""
    import sys

    for name in argv if argv is not None else sys.argv[1:]:
        print(render(json.loads(Path(name).read_text())), end="\n\n")


if __name__ == "__main__":
    main()
