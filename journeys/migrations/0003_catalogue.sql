-- The step catalogue: reference data (typed contact fields, users, static
-- selections and projects, files), CRM records, script calls, and the journal
-- the dossier reads besides messages.

-- Free contact fields with a declared type; fields without one stay free-form.
CREATE TABLE contact_fields (
    name            text PRIMARY KEY,
    type            text NOT NULL,          -- text | number | boolean | date | datetime | list
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Colleagues who own contacts and receive records and notifications.
CREATE TABLE users (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    email           text NOT NULL,
    time_zone       text NOT NULL DEFAULT 'UTC',
    created_at      timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE contacts
    ADD COLUMN owner         text REFERENCES users (key),
    ADD COLUMN service_owner text REFERENCES users (key);

CREATE TABLE selections (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    type            text NOT NULL,          -- static (query selections come later)
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE selection_members (
    selection_key   text NOT NULL REFERENCES selections (key),
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (selection_key, contact_id)
);
CREATE INDEX selection_members_contact ON selection_members (contact_id);

CREATE TABLE projects (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE project_members (
    project_key     text NOT NULL REFERENCES projects (key),
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_key, contact_id)
);
CREATE INDEX project_members_contact ON project_members (contact_id);

-- Uploaded files (attachments). Kept in the database so that every worker reads
-- the same bytes and a backup holds them.
CREATE TABLE files (
    id              uuid PRIMARY KEY,
    filename        text NOT NULL,
    content_type    text NOT NULL,
    size            bigint NOT NULL,
    data            bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Activities, requests and sales created for a contact, once per idempotency key.
CREATE TABLE crm_records (
    id              uuid PRIMARY KEY,
    idempotency_key text UNIQUE,
    kind            text NOT NULL,          -- activity | request | sale
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    title           text NOT NULL,
    record_type     text,                   -- call | meeting | todo, the request or sale type
    status          text,
    owner           text REFERENCES users (key),
    assigned_by     text,                   -- how the owner was chosen
    due_at          timestamptz,
    ends_at         timestamptz,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    journey_key     text,
    step            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX crm_records_contact ON crm_records (contact_id, created_at);
CREATE INDEX crm_records_owner_due ON crm_records (owner, due_at) WHERE kind = 'activity';

-- Round-robin assignment of requests per category.
CREATE TABLE request_rules (
    category        text PRIMARY KEY,
    members         text[] NOT NULL,
    next_index      integer NOT NULL DEFAULT 0
);

-- Calls of run_script steps, made in the background with bounded attempts.
CREATE TABLE script_calls (
    id              uuid PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    url             text NOT NULL,
    status          text NOT NULL,          -- pending | succeeded | failed
    attempts        integer NOT NULL DEFAULT 0,
    response_status integer,
    error           text,
    journey_key     text,
    step            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX script_calls_contact ON script_calls (contact_id, created_at);

-- What else the product did to a contact: selection and project changes,
-- journey entries, exits and refusals. Read by the dossier.
CREATE TABLE contact_journal (
    id              bigserial PRIMARY KEY,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    kind            text NOT NULL,
    title           text NOT NULL,
    journey_key     text,
    step            text,
    idempotency_key text UNIQUE,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_journal_contact ON contact_journal (contact_id, at);

-- SMS: the text sent and the segments it took.
ALTER TABLE messages
    ADD COLUMN body     text,
    ADD COLUMN segments integer;
