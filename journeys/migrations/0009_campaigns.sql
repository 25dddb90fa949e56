-- Campaigns (seed 003): actions that generate a record per contact of a selection (or
-- one for the whole action), optionally mail or enrol them; costs fixed, variable (per
-- contact reached) and actual (purchase invoices).
CREATE TABLE campaigns (
    key             text PRIMARY KEY,
    name            text NOT NULL,
    fixed_cost      numeric(14, 2) NOT NULL DEFAULT 0,
    currency        text NOT NULL DEFAULT 'EUR',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_actions (
    campaign_key     text NOT NULL REFERENCES campaigns (key),
    key              text NOT NULL,
    selection_key    text NOT NULL REFERENCES selections (key),
    record_type      text NOT NULL,
    subject          text NOT NULL,
    per_destination  boolean NOT NULL DEFAULT true,
    done             boolean NOT NULL DEFAULT false,
    cost_per_contact numeric(14, 4) NOT NULL DEFAULT 0,
    -- The action's mail, published as a journey of its own so that its messages,
    -- tracking and follow-ups take the product's one send path.
    mail_journey     text REFERENCES journeys (key),
    journey_key      text REFERENCES journeys (key),   -- or: destinations enter this journey
    operation_id     uuid REFERENCES operations (id),  -- the generation, once asked for
    contacts         integer,                           -- reached, once generated
    generated_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_key, key)
);

-- Members of the selection left out of one action (C3).
CREATE TABLE campaign_unlinked (
    campaign_key    text NOT NULL,
    action_key      text NOT NULL,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_key, action_key, contact_id),
    FOREIGN KEY (campaign_key, action_key) REFERENCES campaign_actions (campaign_key, key)
);

-- The campaign's dossier: one record per contact reached, or one for the whole action
-- (contact_id NULL). A contact's own dossier shows its records too.
CREATE TABLE campaign_records (
    id              uuid PRIMARY KEY,
    campaign_key    text NOT NULL,
    action_key      text NOT NULL,
    contact_id      uuid REFERENCES contacts (id),
    record_type     text NOT NULL,
    subject         text NOT NULL,
    done            boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (campaign_key, action_key) REFERENCES campaign_actions (campaign_key, key)
);
CREATE UNIQUE INDEX campaign_records_per_contact
    ON campaign_records (campaign_key, action_key, contact_id) WHERE contact_id IS NOT NULL;
CREATE UNIQUE INDEX campaign_records_per_action
    ON campaign_records (campaign_key, action_key) WHERE contact_id IS NULL;
CREATE INDEX campaign_records_contact ON campaign_records (contact_id, created_at);

-- Actual costs: the purchase invoices booked on the campaign.
CREATE TABLE campaign_costs (
    id              bigserial PRIMARY KEY,
    campaign_key    text NOT NULL REFERENCES campaigns (key),
    description     text NOT NULL,
    amount          numeric(14, 2) NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);

-- Message results per journey (campaign mails are counted by their mail journey).
CREATE INDEX messages_journey ON messages (journey_key, status);
