-- Recurring sends (seed 004, SMP "doorlopende verzending"): a message sent on a Temporal
-- Schedule (`recurring/<key>`) to whoever a selection finds at that moment. Each run
-- freezes its recipients here (contacts, or contact-record pairs), marks those sharing an
-- address, and sends through the product's send path; the counts come from this table,
-- so a retried run counts nobody twice.
CREATE TABLE recurring_sends (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    definition      jsonb NOT NULL,         -- what was posted, less the status
    status          text NOT NULL,          -- draft | testing | live | stopped
    message_journey text,                   -- the journey its message is published as
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE recurring_runs (
    id              uuid PRIMARY KEY,
    recurring_key   text NOT NULL REFERENCES recurring_sends (key),
    workflow_id     text NOT NULL,          -- the run in the Temporal web UI
    temporal_run_id text NOT NULL UNIQUE,   -- one row per run, whatever the retries
    kind            text NOT NULL,          -- run | internal | test
    at              timestamptz NOT NULL,   -- the run's moment (its local day counts)
    local_day       date NOT NULL,
    status          text NOT NULL DEFAULT 'running',  -- running | completed | skipped | failed
    reason          text,                   -- why it was skipped or failed
    counts          jsonb NOT NULL DEFAULT '{}'::jsonb,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    frozen_at       timestamptz,
    finished_at     timestamptz
);
CREATE INDEX recurring_runs_latest ON recurring_runs (recurring_key, opened_at DESC);

CREATE TABLE recurring_targets (
    run_id          uuid NOT NULL REFERENCES recurring_runs (id),
    seq             integer NOT NULL,       -- the order the run sends in
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    record_id       uuid,
    address         text,                   -- lower-cased, for de-duplication
    -- send | deduplicated, then: sent | skipped | excluded | failed
    status          text NOT NULL DEFAULT 'send',
    reason          text,
    PRIMARY KEY (run_id, seq)
);
