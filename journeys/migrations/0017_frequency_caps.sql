-- Frequency caps (G2): at most `max_messages` messages of a channel to a contact within
-- `per`, across journeys. A journey's message over the cap waits until the cap allows
-- it; transactional messages (a code, a receipt) are neither held nor counted.
CREATE TABLE frequency_caps (
    channel      text PRIMARY KEY,
    max_messages integer NOT NULL CHECK (max_messages > 0),
    per          text NOT NULL,  -- an ISO 8601 duration, as given (checked by the API)
    updated_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE messages ADD COLUMN transactional boolean NOT NULL DEFAULT false;
