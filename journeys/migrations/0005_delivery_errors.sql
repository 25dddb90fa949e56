-- Delivery errors (bounces, complaints, refusals) and the addresses no mail goes to.

-- A delivery error is a message event of kind 'delivery_error', delivered by the
-- dispatcher like an open or a click; data holds {"kind", "detail", "source"}.
ALTER TABLE message_events ADD COLUMN data jsonb;

-- An address that hard-bounced or complained: no e-mail goes to it from anywhere,
-- whichever contact has it. Stored lower-cased.
CREATE TABLE suppressed_addresses (
    address     text PRIMARY KEY,
    reason      text NOT NULL,           -- hard_bounce | complaint
    message_id  uuid REFERENCES messages (id),
    at          timestamptz NOT NULL DEFAULT now()
);

-- Reports naming a message this product does not know: kept, to be looked into.
CREATE TABLE orphan_delivery_reports (
    id          bigserial PRIMARY KEY,
    reference   text NOT NULL,
    kind        text NOT NULL,
    detail      text,
    source      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX messages_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;

-- Follow-ups. A message whose step has follow-ups names that step: its path from
-- the journey version's steps ({mail1} or, inside a follow-up, {mail1,hot,s}).
ALTER TABLE messages ADD COLUMN follow_up_path text[];

-- Every follow-up that fired: its run, and the message and rule it fired for.
CREATE TABLE follow_up_runs (
    workflow_id     text PRIMARY KEY,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    journey_key     text NOT NULL,
    message_id      uuid NOT NULL REFERENCES messages (id),
    follow_up_key   text NOT NULL,
    trigger         text NOT NULL,
    fired_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX follow_up_runs_contact ON follow_up_runs (contact_id);
