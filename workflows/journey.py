"""JourneyWorkflow: one participant's run through one pinned journey version.

The interpreter is a loop: look up the current step, run its handler
(`workflows.steps`), follow the edge it returns. Everything a later run needs
(where it is, what it sent, which events arrived) lives in `JourneyState`, so
the run can continue-as-new between steps when its history grows long.

A participant leaves early when removed (a signal) or when the journey's
`exit_if` holds: checked before every step, and during a wait as soon as an
event or a profile change arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from journeys.conditions import evaluate, facts_read
    from journeys.definition import End, WaitForEvent, parse_duration
    from journeys.definition.followups import same_link
    from journeys.definition.journey import TriggeredEntry
    from journeys.models import (
        SA_STATUS,
        SA_STEP,
        STEPS_TAKEN_KEY,
        ContactEvent,
        JourneyInput,
        JourneyProgress,
        JourneyState,
        MessageEvent,
        ParticipantStatus,
        ProfileChange,
        Removal,
        StepVisit,
        shown_steps_taken,
        step_token,
    )
    from workflows.steps import run_step
    from workflows.steps.common import Left
    from workflows.steps.profile import load_profile_for, note, note_exit

STEP_KEY = SearchAttributeKey.for_keyword(SA_STEP)
# The latest events of the names the journey waits for; a wait looks only at events
# that come after it started, so older ones are never asked about.
KEPT_CONTACT_EVENTS = 50
STATUS_KEY = SearchAttributeKey.for_keyword(SA_STATUS)

# Patches: changes to the commands a run gives, each guarded for runs started before
# (README, "Changing workflow code").
# A failed step is noted (status, dossier) before the run fails.
FAILED_STATUS = "failed-status"
# The end step and the status `completed` are shown in one upsert, not two.
END_IN_ONE_UPSERT = "end-in-one-upsert"
# A click on a condition's link counts without its query and fragment (personalised).
LINKS_WITHOUT_QUERY = "links-without-query"


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        self.input = input
        self.state = input.state or JourneyState(current_step=input.definition.start)
        self.status: ParticipantStatus = "running"
        self.reason: str | None = None
        # Set by a signal that may make exit_if hold; a wait then checks it.
        self._nudged = False
        # The client sets the first step's search attributes when it starts the
        # run; after continue-as-new they carry over. Only changes are upserted.
        history = self.state.history
        self._shown_step = history[-1].step if history else input.definition.start
        # An end step not yet shown: it goes out with the status (END_IN_ONE_UPSERT).
        self._end_step: str | None = None
        # The steps shown as taken (search attribute, carried over by continue-as-new):
        # each change of step shows the set with the step, in the same upsert. A run
        # started before the attribute existed shows the steps its state recalls.
        # Shown as tokens when the ids did not fit (`shown_steps_taken`): read back as ids.
        ids = {step_token(step): step for step in input.definition.steps} | {
            step: step for step in input.definition.steps
        }
        shown_taken = workflow.info().typed_search_attributes.get(STEPS_TAKEN_KEY) or ()
        self._steps_taken = {ids[value] for value in shown_taken if value in ids} | {
            visit.step for visit in history
        }
        self._awaited_events = {
            step.name
            for step in input.definition.steps.values()
            if isinstance(step, WaitForEvent) and step.event == "custom"
        }

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyProgress:
        steps = input.definition.steps
        try:
            # A follow-up, and a journey entered on an event or a field change, may wait
            # and check run_if before the first step (once: a run continued-as-new
            # carries its state and is past that).
            if input.state is None and not await self._may_start():
                return self.progress()
            while True:
                step_id = self.state.current_step
                await self.check_leave(step_id)
                self._arrive(step_id)
                next_step = await run_step(self, step_id, steps[step_id])
                if next_step is None:
                    break
                self.state.current_step = next_step
                if workflow.info().is_continue_as_new_suggested():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(input.model_copy(update={"state": self.state}))
        except Left as left:
            self.status, self.reason = left.status, left.reason
            # A removal is noted by whoever removed it. Runs that exited before exits
            # were noted replay without the activity.
            if left.status == "exited" and workflow.patched("note-exits"):
                await note_exit(self, left.reason)
            workflow.upsert_search_attributes([STATUS_KEY.value_set(left.status)])
            workflow.set_current_details(
                f"{left.status.capitalize()} at step `{self.state.current_step}`: {left.reason}"
            )
            return self.progress()
        except ActivityError as exc:
            # A step's activity failed for good. A cancelled run is not a failed one
            # (and records no marker); runs that failed before failures were noted
            # replay as they ran: the error went straight out.
            if is_cancelled_exception(exc) or not workflow.patched(FAILED_STATUS):
                raise
            await self._fail(exc)
        self.status = "completed"
        shown = self._shown_at(self._end_step) if self._end_step else []
        workflow.upsert_search_attributes([*shown, STATUS_KEY.value_set("completed")])
        workflow.set_current_details(f"Completed at step `{self.state.current_step}`.")
        return self.progress()

    async def _fail(self, exc: ActivityError) -> NoReturn:
        """End the run failed at its step: the status, the web UI's details and the
        dossier say why, then the run fails with that reason (`journeys ops failed`)."""
        step = self.state.current_step
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        self.status, self.reason = "failed", f"step `{step}` failed: {reason}"
        self.record_outcome(f"failed: {reason}")
        workflow.upsert_search_attributes([STATUS_KEY.value_set("failed")])
        workflow.set_current_details(f"Failed at step `{step}`: {reason}")
        info = workflow.info()
        # One line per run chain and step: a reset (which keeps the chain's first run
        # id) that fails at the step again adds none. (Only the activity's input
        # changed: runs that noted under their own run id replay the same.)
        await note(
            self,
            "journey_failed",
            f"{self.input.journey_key} failed at step {step}: {reason}",
            f"failed/{info.workflow_id}/{info.first_execution_run_id}/{step}",
            summary="note the failure in the dossier",
        )
        raise ApplicationError(self.reason, type="StepFailed", non_retryable=True) from exc

    async def _may_start(self) -> bool:
        follow_up, entry = self.input.follow_up, self.input.definition.entry
        if follow_up is not None:
            wait, run_if = follow_up.wait, follow_up.run_if
            where = f"Follow-up `{follow_up.key}` of `{'/'.join(follow_up.path[:-1])}`"
            kind, trigger = "follow_up_skipped", follow_up.trigger
        elif isinstance(entry, TriggeredEntry):
            wait, run_if = entry.wait or "PT0M", entry.run_if
            where, kind, trigger = "The entry", "journey_skipped", entry.type
        else:
            return True
        delay = parse_duration(wait, zero=True)
        if delay > timedelta(0):
            self.describe(
                f"{where} ({trigger}): waiting until "
                f"{workflow.now() + delay:%Y-%m-%d %H:%M} UTC, then `{self.state.current_step}`."
            )
            await self.pause(delay, "wait before the first step")
        if run_if is None:
            return True
        snapshot = await load_profile_for(self, "run_if", run_if, facts_read(run_if))
        if evaluate(run_if, snapshot.fields, self.state, snapshot.memberships, self.links_match):
            return True
        self.status, self.reason = "skipped", "run_if no longer held when the wait was over"
        await note(
            self,
            kind,
            f"{where} of {self.input.journey_key} skipped: {self.reason}",
            f"skipped/{workflow.info().workflow_id}/{workflow.info().first_execution_run_id}",
            summary="note the skipped run in the dossier",
        )
        workflow.upsert_search_attributes([STATUS_KEY.value_set("skipped")])
        workflow.set_current_details(f"Skipped: {self.reason}.")
        return False

    def _arrive(self, step_id: str) -> None:
        self.state.history.append(StepVisit(step=step_id, at=workflow.now()))
        step = self.input.definition.steps[step_id]
        if step_id != self._shown_step:
            if isinstance(step, End) and workflow.patched(END_IN_ONE_UPSERT):
                # The run ends right here: shown with the status, one event fewer.
                self._end_step = step_id
            else:
                workflow.upsert_search_attributes(self._shown_at(step_id))
            self._shown_step = step_id
        self.describe(
            f"At step `{step_id}` ({step.type}){': ' + step.title if step.title else ''}."
        )

    def _shown_at(self, step_id: str) -> list[SearchAttributeUpdate[Any]]:
        """The search attributes that show the run at `step_id`. The steps taken ride
        along in the same upsert: one command as before, so older runs replay. They are
        bounded (`shown_steps_taken`): a value Temporal refuses terminates the run."""
        self._steps_taken.add(step_id)
        return [
            STEP_KEY.value_set(step_id),
            STEPS_TAKEN_KEY.value_set(shown_steps_taken(self._steps_taken)),
        ]

    def describe(self, details: str) -> None:
        """Current details in the web UI: where the participant is and why."""
        workflow.set_current_details(
            f"**{self.input.journey_key}** v{self.input.version}\n\n{details}"
        )

    def record_outcome(self, outcome: str) -> None:
        self.state.history[-1].outcome = outcome

    async def check_leave(self, step_id: str, when: str = "before") -> None:
        """Raise `Left` when the participant was removed or `exit_if` holds now."""
        # What made a wait look again is taken into account by this check.
        self._nudged = False
        if self.state.removal is not None:
            raise Left("removed", self.state.removal)
        exit_if = self.input.definition.exit_if
        if exit_if is None:
            return
        snapshot = await load_profile_for(self, step_id, exit_if, facts_read(exit_if))
        if evaluate(exit_if, snapshot.fields, self.state, snapshot.memberships, self.links_match):
            raise Left("exited", f"exit_if held {when} `{step_id}`")

    def links_match(self, clicked: str | None, wanted: str) -> bool:
        """Whether a click was on the link a condition names: the same URL, or the same
        without its query and fragment (`same_link`, as follow-ups match). Runs that
        reached such a click on code before LINKS_WITHOUT_QUERY did not count the
        second kind, and keep not counting it on replay."""
        if clicked == wanted:
            return True
        # Also called from wait_for_event's wait_condition predicate: the SDK lets a
        # condition check record the marker, and a replay meets the same check at the
        # same point of the history (tests/histories/test_a_click_on_the_link_with_*).
        return same_link(clicked, wanted) and workflow.patched(LINKS_WITHOUT_QUERY)

    async def pause(
        self, timeout: timedelta, summary: str, done: Callable[[], bool] | None = None
    ) -> bool:
        """Wait until `done()` holds (True) or `timeout` passes (False), leaving early
        (`Left`) when the participant is removed or exit_if comes to hold."""
        deadline = workflow.now() + timeout
        remaining = timeout
        while True:

            def woken() -> bool:
                return (done is not None and done()) or self._nudged

            try:
                await workflow.wait_condition(woken, timeout=remaining, timeout_summary=summary)
            except TimeoutError:
                return False
            if done is not None and done():
                return True
            await self.check_leave(self.state.current_step, "during")
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                return False

    def _nudge(self) -> None:
        if self.input.definition.exit_if is not None:
            self._nudged = True

    @workflow.signal
    def message_event(self, event: MessageEvent) -> None:
        # Steps ask whether a message was opened, clicked (on a link), bounced (how):
        # one event of each kind per message, link and error answers that, so the
        # state stays bounded, and
        # the dispatcher's re-delivery of an event changes nothing.
        if not any(
            (e.message_id, e.kind, e.url, e.error)
            == (event.message_id, event.kind, event.url, event.error)
            for e in self.state.message_events
        ):
            self.state.message_events.append(event)

    @workflow.signal
    def contact_event(self, event: ContactEvent) -> None:
        self._nudge()
        # Only events a wait_for_event step of this journey can wait for are kept.
        if event.name not in self._awaited_events:
            return
        events = self.state.contact_events
        # A re-delivery by the dispatcher (or a caller's retry) carries the same id.
        if event.id is not None and any(e.id == event.id for e in events):
            return
        events.append(event)
        if len(events) > KEPT_CONTACT_EVENTS:
            del events[0]
            self.state.contact_events_dropped += 1

    @workflow.signal
    def profile_changed(self, change: ProfileChange) -> None:
        self._nudge()

    @workflow.signal
    def remove(self, removal: Removal) -> None:
        if self.state.removal is None:
            self.state.removal = removal.reason
            self._nudged = True

    @workflow.query
    def progress(self) -> JourneyProgress:
        return JourneyProgress(
            journey_key=self.input.journey_key,
            version=self.input.version,
            status=self.status,
            current_step=self.state.current_step,
            history=self.state.history,
            reason=self.reason,
            details=workflow.get_current_details() or None,
        )
