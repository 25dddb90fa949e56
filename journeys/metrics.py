"""Prometheus metrics: the product's `journeys_*` and the Temporal SDK's `temporal_*`.

Each process counts what happens in it, in prometheus-client's default registry, and
serves the lot in one exposition: the API at `GET /metrics`, `journeys worker` on
JOURNEYS_METRICS_PORT (`serve`), `journeys dev` (API and worker in one process) at the
API's. Prometheus adds the processes up (`sum by (channel, status) (rate(...))`).

The product's metrics are defined here once and counted at the one place each thing
happens, through the small functions below, which never raise into the product's path:

- enrolments: `journeys.enrolment` (when intents are marked, and refusals);
- sends, by channel and status: `activities/sends.py` (every outcome decided there);
- events, delivery errors, dispatcher lag and retries: `journeys.dispatch`, the one
  place every stored event passes (opens, clicks, unsubscribes, delivery errors from
  any source, a message's `sent`, `POST /events`, profile changes);
- follow-ups fired: `journeys.followups.start_follow_up`;
- the outbox's backlog (undelivered, failing, the oldest's age): read from the database
  by the API at each scrape of its `/metrics` (`read_outbox`).

Labels are low-cardinality: channel, status, kind, source, trigger, and the journey key
(the published journeys, campaign and recurring-send journeys included); never a contact,
an address or a message.

The SDK's metrics come from the Rust core. Every client of a process is made on one
`Runtime` (`sdk_runtime`) whose metrics go to a `MetricBuffer`; `SdkMetrics` drains it
every second (and at each scrape) into this registry. The alternative, the core's own
Prometheus server (`PrometheusConfig`), costs no Python but needs a second port per
process; with the buffer a process has one scrape target (one port to declare in a
pod or a compose file), and the API's `/metrics` also shows its Temporal client's
requests and failures. The price is paid in Python: a workflow of four workflow tasks
and three activities gives about 110 updates, drained and summed at about 2.3 us each,
some 0.25 ms against the 15 ms of CPU such a workflow costs on this machine.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ParamSpec

import asyncpg
import structlog
from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BufferedMetric,
    LogForwardingConfig,
    LoggingConfig,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from journeys.db import Executor
from journeys.outages import outage_log, outage_of

log = structlog.get_logger(__name__)

# No `*_created` series beside each counter and histogram: twice the series, and Prometheus
# does not need them to compute rates.
disable_created_metrics()  # type: ignore[no-untyped-call]

# --- the product's metrics ------------------------------------------------------------------

ENROLMENTS = Counter(
    "journeys_enrolments_total",
    "Enrolments decided, by journey and status (enrolled, already_enrolled, refused)",
    ["journey", "status"],
)
SENDS = Counter(
    "journeys_sends_total",
    "Messages whose outcome the send path decided, by channel (email, sms, notification)"
    " and status (sent, skipped, rejected, failed; deferred each time a frequency cap"
    " holds one back)",
    ["channel", "status"],
)
EVENTS = Counter(
    "journeys_events_total",
    "Events delivered by the dispatcher, by kind (opened, clicked, unsubscribed,"
    " delivery_error, sent, custom, profile_change)",
    ["kind"],
)
DELIVERY_ERRORS = Counter(
    "journeys_delivery_errors_total",
    "Delivery errors delivered by the dispatcher, by channel and kind (hard_bounce,"
    " soft_bounce, complaint, rejected)",
    ["channel", "kind"],
)
FOLLOW_UPS = Counter(
    "journeys_follow_ups_total",
    "Follow-up runs started, by journey and trigger (sent, opened, clicked, delivery_error)",
    ["journey", "trigger"],
)
DISPATCH_LAG = Histogram(
    "journeys_dispatch_lag_seconds",
    "From an event's time (a hit's arrival, an insert) to its delivery by the dispatcher,"
    " by source (message, contact)",
    ["source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
DISPATCH_RETRIES = Counter(
    "journeys_dispatch_retries_total",
    "Event deliveries that failed and are tried again later, by source (message, contact)",
    ["source"],
)

# The outbox's backlog is a fact of the database, not of a process: the API reads it at
# each scrape of its /metrics (`read_outbox`); a worker's endpoint has the families
# without samples. Every API serves the same values, so queries take the max.
OUTBOX_UNDELIVERED = Gauge(
    "journeys_outbox_undelivered",
    "Stored events not yet delivered, by source (message, contact), read at the scrape",
    ["source"],
)
OUTBOX_FAILING = Gauge(
    "journeys_outbox_failing",
    "Undelivered events whose delivery failed at least once and waits for its next"
    " attempt, by source (message, contact), read at the scrape",
    ["source"],
)
OUTBOX_OLDEST = Gauge(
    "journeys_outbox_oldest_seconds",
    "Age of the oldest undelivered event by the database's clock (0 without any), by"
    " source (message, contact), read at the scrape",
    ["source"],
)

PRODUCT_METRICS = (
    ENROLMENTS,
    SENDS,
    EVENTS,
    DELIVERY_ERRORS,
    FOLLOW_UPS,
    DISPATCH_LAG,
    DISPATCH_RETRIES,
    OUTBOX_UNDELIVERED,
    OUTBOX_FAILING,
    OUTBOX_OLDEST,
)

# The scrape answers without the outbox's figures rather than wait for a slow database.
OUTBOX_READ_TIMEOUT_SECONDS = 2.0

P = ParamSpec("P")
_reported: set[str] = set()


def _never_raises(fn: Callable[P, None]) -> Callable[P, None]:
    """Counting must not break what is counted: a failure is logged once per function."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if fn.__name__ not in _reported:
                _reported.add(fn.__name__)
                log.warning(
                    "metrics.failed", metric=fn.__name__, error=f"{type(exc).__name__}: {exc}"
                )

    return wrapper


@_never_raises
def enrolments(journey: str, statuses: Iterable[str]) -> None:
    for status in statuses:
        ENROLMENTS.labels(journey, status).inc()


@_never_raises
def send(channel: str, status: str) -> None:
    SENDS.labels(channel, status).inc()


@_never_raises
def events_delivered(
    source: str, rows: Iterable[asyncpg.Record], failed: Collection[int] = ()
) -> None:
    """The dispatcher delivered `rows` (but the ids in `failed`): message or contact events."""
    now = datetime.now(UTC)
    for row in rows:
        if row["id"] in failed:
            continue
        EVENTS.labels(row["kind"]).inc()
        DISPATCH_LAG.labels(source).observe(max(0.0, (now - row["at"]).total_seconds()))
        if row["kind"] == "delivery_error":
            kind = (row["data"] or {}).get("kind") or "unknown"
            DELIVERY_ERRORS.labels(row["channel"], kind).inc()


@_never_raises
def dispatch_retried(source: str, count: int) -> None:
    DISPATCH_RETRIES.labels(source).inc(count)


@_never_raises
def follow_up_fired(journey: str, trigger: str) -> None:
    FOLLOW_UPS.labels(journey, trigger).inc()


async def read_outbox(db: Executor) -> None:
    """Set the outbox gauges from the database. When it cannot be read, the series are
    removed rather than left at their last values: an absent series says "unknown", a
    stale one would say "fine"."""
    from journeys.store.outbox import backlog

    try:
        # The statement's timeout does not count the wait for a pool connection.
        found = await asyncio.wait_for(
            backlog(db, timeout=OUTBOX_READ_TIMEOUT_SECONDS), OUTBOX_READ_TIMEOUT_SECONDS
        )
    except Exception as exc:
        for gauge in (OUTBOX_UNDELIVERED, OUTBOX_FAILING, OUTBOX_OLDEST):
            gauge.clear()
        error = f"{type(exc).__name__}: {exc}"[:300]
        if not outage_log.failed(outage_of(exc), "metrics.outbox_unread", error):
            log.warning("metrics.outbox_unread", error=error)
        return
    for row in found:
        OUTBOX_UNDELIVERED.labels(row.source).set(row.undelivered)
        OUTBOX_FAILING.labels(row.source).set(row.failing)
        OUTBOX_OLDEST.labels(row.source).set(row.oldest_seconds)


# --- the Temporal SDK's metrics ---------------------------------------------------------------

# The core's durations, in seconds: a workflow task takes milliseconds, a journey years.
SDK_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    3600.0,
    86400.0,
)
# Updates the core may buffer between two drains (one a second); beyond it drops them.
BUFFER_SIZE = 200_000
DRAIN_SECONDS = 1.0

Labels = tuple[tuple[str, str], ...]
Attributes = tuple[tuple[str, Any], ...]  # as the core gives them


def _label_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class _SdkMetric:
    """One of the core's metrics and its series, summed from the buffered updates."""

    def __init__(self, metric: BufferedMetric) -> None:
        self.kind = metric.kind
        seconds = metric.unit == "s" and self.kind not in (
            BUFFERED_METRIC_KIND_COUNTER,
            BUFFERED_METRIC_KIND_GAUGE,
        )
        self.name = f"{metric.name}_seconds" if seconds else metric.name
        self.help = metric.description or metric.name
        # Counter and gauge: [value]. Histogram: a count per bucket, +Inf last, then the sum.
        self.series: dict[Labels, list[float]] = {}

    def values(self, labels: Labels) -> list[float]:
        """The series of `labels`, made on first use."""
        found = self.series.get(labels)
        if found is None:
            single = self.kind in (BUFFERED_METRIC_KIND_COUNTER, BUFFERED_METRIC_KIND_GAUGE)
            found = self.series[labels] = [0.0] * (1 if single else len(SDK_BUCKETS) + 2)
        return found

    def family(self) -> Metric:
        names = sorted({name for labels in self.series for name, _ in labels})

        def values(labels: Labels) -> list[str]:
            given = dict(labels)
            return [given.get(name, "") for name in names]

        family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if self.kind == BUFFERED_METRIC_KIND_COUNTER:
            family = CounterMetricFamily(self.name, self.help, labels=names)
            for labels, (value,) in self.series.items():
                family.add_metric(values(labels), value)
        elif self.kind == BUFFERED_METRIC_KIND_GAUGE:
            family = GaugeMetricFamily(self.name, self.help, labels=names)
            for labels, (value,) in self.series.items():
                family.add_metric(values(labels), value)
        else:
            family = HistogramMetricFamily(self.name, self.help, labels=names)
            for labels, counts in self.series.items():
                cumulative, buckets = 0.0, []
                for bound, count in zip((*SDK_BUCKETS, float("inf")), counts, strict=False):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                family.add_metric(values(labels), buckets, sum_value=counts[-1])
        return family


class SdkMetrics(Collector):
    """The core's metrics, drained from its buffer into prometheus-client families."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self._buffer = buffer
        self._lock = threading.Lock()
        # By the metric's name: each worker and client the process makes has metric
        # objects of its own for the same metric, whose updates add up in one family
        # (keyed by object, a second worker's made a second family of the same name).
        self._metrics: dict[str, _SdkMetric] = {}
        # (name, the attributes as given) -> (kind, the series). The core does not
        # always hand out the same attribute object for the same set (6,000 objects for
        # 34,000 updates of 300 workflows), so they are compared by value.
        self._series: dict[tuple[str, Attributes], tuple[int, list[float]]] = {}

    def drain(self) -> None:
        with self._lock:
            series = self._series
            for update in self._buffer.retrieve_updates():
                metric, attributes = update.metric, tuple(update.attributes.items())
                found = series.get((metric.name, attributes))
                if found is None:
                    found = self._new_series(metric, attributes)
                kind, values = found
                value = update.value
                if kind == BUFFERED_METRIC_KIND_COUNTER:
                    values[0] += value
                elif kind == BUFFERED_METRIC_KIND_GAUGE:
                    values[0] = value
                else:
                    values[bisect.bisect_left(SDK_BUCKETS, value)] += 1
                    values[-1] += value

    def _new_series(
        self, source: BufferedMetric, attributes: Attributes
    ) -> tuple[int, list[float]]:
        metric = self._metrics.get(source.name)
        if metric is None:
            metric = self._metrics[source.name] = _SdkMetric(source)
        labels = tuple(sorted((k, _label_value(v)) for k, v in attributes))
        found = self._series[(source.name, attributes)] = (metric.kind, metric.values(labels))
        return found

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            families = [metric.family() for metric in self._metrics.values()]
        yield from families


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def sdk_runtime() -> Runtime:
    """The process's Temporal runtime, made on first use: its metrics go to this
    registry, and the core's own log lines (warnings and errors, as by default) to the
    `temporalio.core` logger, so that they are JSON lines like the rest. Every client of
    the process is made on it (`journeys.temporal.connect`)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
            core_logs = LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
            runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer, logging=core_logs))
            collector = SdkMetrics(buffer)
            REGISTRY.register(collector)
            threading.Thread(
                target=_drain_forever, args=(collector,), name="sdk-metrics", daemon=True
            ).start()
            _runtime = runtime
        return _runtime


def _drain_forever(collector: SdkMetrics) -> None:
    while True:
        time.sleep(DRAIN_SECONDS)
        try:
            collector.drain()
        except Exception as exc:
            if "sdk" not in _reported:
                _reported.add("sdk")
                log.warning("metrics.sdk_drain_failed", error=f"{type(exc).__name__}: {exc}")
