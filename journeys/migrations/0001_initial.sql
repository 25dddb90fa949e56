-- Contacts, journey versions, enrolments, messages and their tracking events.

CREATE TABLE contacts (
    id              uuid PRIMARY KEY,
    external_id     text UNIQUE,
    email           text,
    phone           text,
    first_name      text,
    last_name       text,
    time_zone       text,
    fields          jsonb NOT NULL DEFAULT '{}'::jsonb,
    unsubscribed_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE journeys (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    latest_version  integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Published versions are immutable; participants stay on the one they entered.
CREATE TABLE journey_versions (
    journey_key     text NOT NULL REFERENCES journeys (key),
    version         integer NOT NULL,
    definition      jsonb NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_key, version)
);

CREATE TABLE enrolments (
    journey_key     text NOT NULL REFERENCES journeys (key),
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    version         integer NOT NULL,
    workflow_id     text NOT NULL,
    run_id          text NOT NULL,
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_key, contact_id)
);
CREATE INDEX enrolments_contact ON enrolments (contact_id);

-- One row per message; the idempotency key makes a retried send a no-op.
CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    channel         text NOT NULL DEFAULT 'email',
    workflow_id     text NOT NULL,
    journey_key     text NOT NULL,
    journey_version integer NOT NULL,
    step            text NOT NULL,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    recipient       text,
    subject         text,
    status          text NOT NULL,          -- sending | sent | skipped
    provider_id     text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX messages_contact ON messages (contact_id, created_at);

CREATE TABLE message_events (
    id              bigserial PRIMARY KEY,
    message_id      uuid NOT NULL REFERENCES messages (id),
    kind            text NOT NULL,          -- opened | clicked | unsubscribed
    url             text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_events_message ON message_events (message_id);

CREATE TABLE contact_events (
    id              bigserial PRIMARY KEY,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    name            text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}'::jsonb,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_events_contact ON contact_events (contact_id, at);
