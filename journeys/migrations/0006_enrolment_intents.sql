-- Enrolment as recorded intent. Before Temporal is called, one statement writes a
-- pending intent per (journey, contact); runs are started with the intent's id in
-- their memo; then one statement marks the intents and records the runs in
-- `enrolments`. A call interrupted anywhere leaves pending intents that the next call
-- (or the worker's sweep) finishes: a run whose memo names the intent is that intent's
-- run, so nothing starts twice.
CREATE TABLE enrolment_intents (
    id              uuid PRIMARY KEY,
    journey_key     text NOT NULL REFERENCES journeys (key),
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    version         integer NOT NULL,
    -- The caller's Idempotency-Key, an operation or an event: intents under a key
    -- are kept once done, so that asking again answers what was done. Intents
    -- without one are deleted once done (their trace is the `enrolments` row).
    request_key     text,
    state           text NOT NULL DEFAULT 'pending',  -- pending | enrolled | already_enrolled | refused
    workflow_id     text,
    run_id          text,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    -- A worker's sweep that took the intent on; another sweep leaves it alone till then.
    swept_until     timestamptz
);
-- One pending intent per (journey, contact): a second caller finishes the first's.
CREATE UNIQUE INDEX enrolment_intents_pending ON enrolment_intents (journey_key, contact_id)
    WHERE state = 'pending';
CREATE UNIQUE INDEX enrolment_intents_request
    ON enrolment_intents (request_key, journey_key, contact_id) WHERE request_key IS NOT NULL;
CREATE INDEX enrolment_intents_stale ON enrolment_intents (created_at) WHERE state = 'pending';
