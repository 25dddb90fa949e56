-- Linked records (seed 004, R): things a contact is linked to, such as the performances
-- a ticket holder has a ticket for. A selection `of` a record type selects contact-record
-- pairs, so that a recurring send goes to each ticket holder once per performance.

-- A kind of record and the declared type of each of its fields (as contact fields:
-- text | number | boolean | date | datetime). Fields are added, never retyped.
CREATE TABLE record_types (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    fields          jsonb NOT NULL,         -- {"title": "text", "starts_at": "datetime"}
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE records (
    id              uuid PRIMARY KEY,
    type            text NOT NULL REFERENCES record_types (key),
    external_id     text,                   -- the caller's id; NULL: no upsert by it
    fields          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (type, external_id)
);

-- A contact linked to a record in a role ('' when the caller names none); a contact may
-- hold several roles on one record.
CREATE TABLE record_links (
    record_id       uuid NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    role            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (record_id, contact_id, role)
);
CREATE INDEX record_links_contact ON record_links (contact_id);

-- What a recurring send's message was about: its recurring send and, for a selection of
-- records, the record. `received {"recurring": ...}` asks about these.
ALTER TABLE messages
    ADD COLUMN record_id     uuid,
    ADD COLUMN recurring_key text;
CREATE INDEX messages_recurring ON messages (recurring_key, contact_id, created_at)
    WHERE recurring_key IS NOT NULL;

-- A query selection `of` a record type (optionally through one role) selects pairs.
ALTER TABLE selections
    ADD COLUMN of_type text REFERENCES record_types (key),
    ADD COLUMN of_role text;
