"""JourneyWorkflow: one participant's run through one pinned journey version.

The interpreter is a loop: look up the current step, run its handler
(`workflows.steps`), follow the edge it returns. Everything a later run needs
(where it is, what it sent, which events arrived) lives in `JourneyState`, so
the run can continue-as-new between steps when its history grows long.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from journeys.models import (
        SA_STATUS,
        SA_STEP,
        ContactEvent,
        JourneyInput,
        JourneyProgress,
        JourneyState,
        MessageEvent,
        ParticipantStatus,
        StepVisit,
    )
    from workflows.steps import run_step

STEP_KEY = SearchAttributeKey.for_keyword(SA_STEP)
STATUS_KEY = SearchAttributeKey.for_keyword(SA_STATUS)


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        self.input = input
        self.state = input.state or JourneyState(current_step=input.definition.start)
        self.status: ParticipantStatus = "running"
        # The client sets the first step's search attributes when it starts the
        # run; after continue-as-new they carry over. Only changes are upserted.
        history = self.state.history
        self._shown_step = history[-1].step if history else input.definition.start

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyProgress:
        steps = input.definition.steps
        while True:
            step_id = self.state.current_step
            self._arrive(step_id)
            next_step = await run_step(self, step_id, steps[step_id])
            if next_step is None:
                break
            self.state.current_step = next_step
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={"state": self.state}))
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

    @workflow.signal
    def message_event(self, event: MessageEvent) -> None:
        self.state.message_events.append(event)

    @workflow.signal
    def contact_event(self, event: ContactEvent) -> None:
        # A caller's retry (same Idempotency-Key) delivers the stored event again.
        if event.id is not None and any(e.id == event.id for e in self.state.contact_events):
            return
        self.state.contact_events.append(event)

    @workflow.query
    def progress(self) -> JourneyProgress:
        return JourneyProgress(
            journey_key=self.input.journey_key,
            version=self.input.version,
            status=self.status,
            current_step=self.state.current_step,
            history=self.state.history,
        )
