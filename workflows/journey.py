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

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from journeys.conditions import evaluate, memberships_read
    from journeys.models import (
        SA_STATUS,
        SA_STEP,
        ContactEvent,
        JourneyInput,
        JourneyProgress,
        JourneyState,
        MessageEvent,
        ParticipantStatus,
        ProfileChange,
        Removal,
        StepVisit,
    )
    from workflows.steps import run_step
    from workflows.steps.common import Left
    from workflows.steps.profile import load_profile_for, note_exit

STEP_KEY = SearchAttributeKey.for_keyword(SA_STEP)
STATUS_KEY = SearchAttributeKey.for_keyword(SA_STATUS)


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

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyProgress:
        steps = input.definition.steps
        try:
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
        self.status = "completed"
        workflow.upsert_search_attributes([STATUS_KEY.value_set("completed")])
        workflow.set_current_details(f"Completed at step `{self.state.current_step}`.")
        return self.progress()

    def _arrive(self, step_id: str) -> None:
        self.state.history.append(StepVisit(step=step_id, at=workflow.now()))
        if step_id != self._shown_step:
            workflow.upsert_search_attributes([STEP_KEY.value_set(step_id)])
            self._shown_step = step_id
        step = self.input.definition.steps[step_id]
        self.describe(
            f"At step `{step_id}` ({step.type}){': ' + step.title if step.title else ''}."
        )

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
        snapshot = await load_profile_for(self, step_id, exit_if, memberships_read(exit_if))
        if evaluate(exit_if, snapshot.fields, self.state, snapshot.memberships):
            raise Left("exited", f"exit_if held {when} `{step_id}`")

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
        self.state.message_events.append(event)

    @workflow.signal
    def contact_event(self, event: ContactEvent) -> None:
        # A caller's retry (same Idempotency-Key) delivers the stored event again.
        if event.id is not None and any(e.id == event.id for e in self.state.contact_events):
            return
        self.state.contact_events.append(event)
        self._nudge()

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
        )
