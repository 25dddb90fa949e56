"""The runs of recurring sends: open, freeze the recipients, send, finish.

A run's recipients are written once (`recurring_targets`), in a fixed order; sending
pages them from the last heartbeat on, each through the product's one send path
(`EmailActivities.send_email`: rendering, tracking, the idempotent message log,
follow-ups) under a key that holds the send's local day. A page done again after a
crash sends nothing twice, and a contact whom another run of the day already sent
the mail is counted `excluded`, not sent again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from zoneinfo import ZoneInfo

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.email import EmailActivities
from activities.relay import RelayDown, RelayGate
from activities.retries import finish_pages, give_up, keep_heartbeating, quiet_outages
from journeys.definition import SendEmail
from journeys.message_journeys import mail_input, mail_step
from journeys.models import (
    FinishRun,
    OpenRun,
    RunInput,
    RunPlan,
    RunProgress,
    RunResult,
    SendResult,
    TesterMail,
)
from journeys.recurring import (
    QUIET_FROM,
    QUIET_UNTIL,
    InternalSend,
    local_day,
    send_key,
)
from journeys.recurring_end import stop_when_ended
from journeys.store import recurring
from journeys.store.conditions_sql import QueryProblem
from journeys.store.journeys import PublishedJourney, get_journey
from journeys.store.queries import pairs_sql

# Targets read and sent per page (mails in flight are bounded by the SMTP connections).
PAGE = 200
PAGES_IN_FLIGHT = 2


class RecurringActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Client,
        task_queue: str,
        default_time_zone: str,
        email: EmailActivities,
    ) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue
        self.default_time_zone = default_time_zone
        self.email = email

    async def _send(self, key: str) -> recurring.StoredSend:
        send = await recurring.get_send(self.pool, key)
        if send is None:
            raise give_up(f"recurring send '{key}' does not exist")
        return send

    async def _run(self, run_id: str) -> recurring.Run:
        run = await recurring.get_run(self.pool, uuid.UUID(run_id))
        if run is None:
            raise give_up(f"run {run_id} does not exist")
        return run

    @activity.defn(name="open_recurring_run")
    @quiet_outages
    async def open_run(self, input: OpenRun) -> RunPlan:
        """The run's row, and whether it sends: only a live send in its period (from its
        start date on), outside the quiet hours (a run caught up late must not mail at night)."""
        stored = await recurring.get_send(self.pool, input.key)
        if stored is None:
            # Deleted while its schedule still ran: nothing to do, and no row to write.
            return RunPlan(run_id="", go=False, reason=f"'{input.key}' does not exist")
        send = stored.definition
        kind = "test" if input.test else "internal" if send.internal else "run"
        day = local_day(input.at, send.time_zone)
        run = await recurring.open_run(
            self.pool, input.key, input.workflow_id, input.run_id, kind, input.at, day
        )
        reason = None
        if run.status != "running":
            reason = run.reason or f"the run is {run.status}"
        elif kind != "test":
            reason = await self._why_not(stored, input)
        if reason is not None:
            if run.status == "running":
                await recurring.finish_run(self.pool, run.id, "skipped", reason)
            return RunPlan(run_id=str(run.id), go=False, reason=reason)
        return RunPlan(run_id=str(run.id), go=True)

    async def _why_not(self, stored: recurring.StoredSend, input: OpenRun) -> str | None:
        send = stored.definition
        today = local_day(input.at, send.time_zone)
        stored = await stop_when_ended(self.pool, self.client, self.task_queue, stored, today)
        if stored.status != "live":
            return f"the send is {stored.status}"
        # The schedule runs from the start date on, but a trigger does not ask it.
        if today < send.start_date:
            return f"{today} is before the start date {send.start_date}"
        broken = await recurring.broken_exclusions(
            self.pool, self.default_time_zone, only=stored.key
        )
        if broken:  # a selection it is made of was changed outside the API's checks
            return broken[0][1]
        at = input.at.astimezone(ZoneInfo(send.time_zone)).time()
        if at >= QUIET_FROM or at < QUIET_UNTIL:
            return f"{at:%H:%M} is in the quiet hours (23:00-06:00): the run was too late"
        return None

    @activity.defn(name="freeze_recurring_run")
    @quiet_outages
    async def freeze_run(self, input: RunInput) -> dict[str, int]:
        """Write the run's recipients once; the counts so far (found, deduplicated)."""
        run = await self._run(input.run_id)
        stored = await self._send(run.recurring_key)
        send = stored.definition
        if not run.frozen:
            try:
                if input.test is not None:
                    (found, args), dedupe = self._test_targets(input.test), False
                elif send.internal is not None:
                    found, args = await self._internal_targets(send.internal)
                    dedupe = send.internal.dedupe
                else:
                    assert send.selection is not None
                    found, args = await self._recipients(send.selection)
                    dedupe = send.dedupe
            except QueryProblem as exc:
                raise give_up(f"selection: {exc}") from None
            await recurring.freeze_run(self.pool, run.id, found, args, dedupe=dedupe)
        return await recurring.run_counts(self.pool, run.id)

    async def _recipients(self, selection: str) -> tuple[str, list[object]]:
        """(contact, record, address) of whom the selection finds: its pairs, or its
        contacts with no record."""
        sql = await pairs_sql(self.pool, selection, self.default_time_zone)
        record = "r.id" if sql.record_type else "NULL::uuid"
        return (
            # pairs_sql gives each contact (or pair) once.
            f"SELECT c.id AS contact_id, {record} AS record_id, "
            f"lower(c.email) AS address {sql.from_where}",
            list(sql.args),
        )

    async def _internal_targets(self, internal: InternalSend) -> tuple[str, list[object]]:
        """Every internal recipient with every record the look-ahead finds."""
        lookahead = await pairs_sql(self.pool, internal.lookahead_selection, self.default_time_zone)
        if lookahead.record_type is None:
            raise give_up(
                f"selection '{internal.lookahead_selection}' selects contacts, not records"
            )
        records = await self.pool.fetch(
            f"SELECT DISTINCT r.id {lookahead.from_where}", *lookahead.args
        )
        staff = await pairs_sql(self.pool, internal.recipients_selection, self.default_time_zone)
        n = len(staff.args)
        return (
            f"""WITH staff AS (SELECT DISTINCT c.id, lower(c.email) AS address {staff.from_where})
                SELECT staff.id AS contact_id, rec AS record_id, staff.address
                FROM staff CROSS JOIN unnest(${n + 1}::uuid[]) AS rec""",
            [*staff.args, [r["id"] for r in records]],
        )

    @staticmethod
    def _test_targets(test: TesterMail) -> tuple[str, list[object]]:
        return (
            """SELECT c.id AS contact_id, $2::uuid AS record_id, lower(c.email) AS address
               FROM contacts c WHERE c.id = ANY($1::uuid[])""",
            [
                [uuid.UUID(c) for c in test.contact_ids],
                uuid.UUID(test.record_id) if test.record_id else None,
            ],
        )

    @activity.defn(name="send_recurring_run")
    @quiet_outages
    async def send_run(self, input: RunInput) -> dict[str, int]:
        """Send to every recipient not done yet, a page at a time, from the last heartbeat."""
        run = await self._run(input.run_id)
        stored = await self._send(run.recurring_key)
        mail, step = await self._mail(stored)
        # The attempt's pages stop together when the relay says it is unavailable.
        gate = self.email.relay_gate()
        details = activity.info().heartbeat_details
        progress = RunProgress.model_validate(details[0]) if details else RunProgress()
        # The next page is read and begun while one finishes, so that sends stay in
        # flight all along; progress is recorded in page order.
        in_flight: deque[tuple[int, asyncio.Task[None]]] = deque()
        after = progress.after
        # A page takes seconds (minutes when the relay is slow): the heartbeat says the
        # worker is alive meanwhile, with the progress a retry resumes from.
        ticker = asyncio.create_task(keep_heartbeating(lambda: progress))
        try:
            while True:
                while len(in_flight) < PAGES_IN_FLIGHT:
                    targets = await recurring.target_page(self.pool, run.id, after, PAGE)
                    if not targets:
                        break
                    after = targets[-1].seq
                    page = self._send_page(run, targets, mail, step, gate)
                    in_flight.append((after, asyncio.create_task(page)))
                if not in_flight:
                    return await recurring.run_counts(self.pool, run.id)
                last, task = in_flight.popleft()
                await task
                progress = RunProgress(after=last)
                activity.heartbeat(progress.model_dump(mode="json"))
        finally:
            ticker.cancel()
            await finish_pages([task for _, task in in_flight])

    async def _send_page(
        self,
        run: recurring.Run,
        targets: list[recurring.Target],
        mail: PublishedJourney,
        step: SendEmail,
        gate: RelayGate,
    ) -> None:
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None  # a workflow's activity
        keys = {t.seq: self._key(run, t) for t in targets}
        elsewhere = await recurring.sent_before(self.pool, list(keys.values()), run.opened_at)
        outcomes: list[tuple[int, str, str | None]] = [
            (t.seq, "excluded", "sent earlier the same day")
            for t in targets
            if keys[t.seq] in elsewhere
        ]

        to_send = [t for t in targets if keys[t.seq] not in elsewhere]
        requests = [
            mail_input(
                mail,
                step,
                idempotency_key=keys[t.seq],
                workflow_id=workflow_id,
                contact_id=str(t.contact_id),
                record_id=str(t.record_id) if t.record_id else None,
                # A test mail is no recipient of the send: it excludes nobody later.
                recurring_key=None if run.kind == "test" else run.recurring_key,
            )
            for t in to_send
        ]
        results = await self.email.send_emails(requests, gate=gate)
        retry: BaseException | None = None
        for target, result in zip(to_send, results, strict=True):
            if isinstance(result, SendResult):
                outcomes.append((target.seq, result.status, result.reason))
            elif isinstance(result, ApplicationError) and result.non_retryable:
                outcomes.append((target.seq, "failed", result.message[:300]))
            else:
                retry = retry or result
        # What was done is recorded before a retryable failure (the mail server away)
        # sends the page round again.
        await recurring.mark_targets(self.pool, run.id, outcomes)
        if gate.down is not None:
            # What the relay said, for the attempt's one line; an outage, so the page
            # is retried whole (a connection lost during DATA is no outage of its own,
            # and would have failed every target left, one by one).
            raise RelayDown(gate.down)
        if retry is not None:
            raise retry

    @staticmethod
    def _key(run: recurring.Run, target: recurring.Target) -> str:
        if run.kind == "test":
            return f"recurring-test/{run.id}/{target.contact_id}"
        record = str(target.record_id) if target.record_id else None
        return send_key(run.recurring_key, run.local_day, str(target.contact_id), record)

    async def _mail(self, stored: recurring.StoredSend) -> tuple[PublishedJourney, SendEmail]:
        """The message to send: this send's, or for an internal send its content's."""
        internal = stored.definition.internal
        source = stored if internal is None else await self._send(internal.content_from)
        if source.message_journey is None:
            raise give_up(f"recurring send '{source.key}' has no message")
        journey = await get_journey(self.pool, source.message_journey)
        step = mail_step(journey) if journey else None
        if journey is None or step is None:
            raise give_up(f"the message of '{source.key}' is missing")
        return journey, step

    @activity.defn(name="finish_recurring_run")
    @quiet_outages
    async def finish_run(self, input: FinishRun) -> RunResult:
        run = await self._run(input.run_id)
        counts = await recurring.finish_run(self.pool, run.id, input.status, input.error)
        return RunResult(run_id=str(run.id), status=input.status, counts=counts, reason=input.error)
