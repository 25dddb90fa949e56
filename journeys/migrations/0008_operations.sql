-- Bulk work that leaves the HTTP request (enrolling a selection, generating a campaign
-- action): one row per operation, its frozen target set, and its progress. The work
-- itself is a Temporal workflow (`operation/<id>`) that pages the targets in heartbeating
-- activities; each target is done idempotently under the operation's id, so a worker
-- crash or a retry repeats nothing.
CREATE TABLE operations (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,          -- enrol_selection | generate_action
    subject         jsonb NOT NULL,         -- what it works on: {"journey", "selection"}, ...
    request_key     text UNIQUE,            -- the caller's Idempotency-Key, or a natural key
    status          text NOT NULL DEFAULT 'running',  -- running | completed | failed
    total           integer,                -- targets, once frozen
    done            integer NOT NULL DEFAULT 0,
    counts          jsonb NOT NULL DEFAULT '{}'::jsonb,
    errors          jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    frozen_at       timestamptz,
    finished_at     timestamptz
);

CREATE TABLE operation_targets (
    operation_id    uuid NOT NULL REFERENCES operations (id),
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    PRIMARY KEY (operation_id, contact_id)
);
