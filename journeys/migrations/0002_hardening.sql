-- Hardening: idempotent events, one unsubscribe per message, send leases.

-- POST /events with an Idempotency-Key stores the event once, whatever the retries;
-- delivered_at/delivered_to let a retry finish a delivery that an outage interrupted.
ALTER TABLE contact_events
    ADD COLUMN idempotency_key text,
    ADD COLUMN delivered_at    timestamptz,
    ADD COLUMN delivered_to    text[];
CREATE UNIQUE INDEX contact_events_idempotency ON contact_events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A second one-click unsubscribe of the same message records nothing new.
DELETE FROM message_events a USING message_events b
    WHERE a.kind = 'unsubscribed' AND b.kind = 'unsubscribed'
      AND a.message_id = b.message_id AND a.id > b.id;
CREATE UNIQUE INDEX message_events_one_unsubscribe ON message_events (message_id)
    WHERE kind = 'unsubscribed';

-- While an attempt may be talking to the mail server it holds the message's lease
-- (renewed while it runs); another attempt does not start a transaction before
-- the lease has run out.
ALTER TABLE messages
    ADD COLUMN lease_owner uuid,          -- the attempt holding it
    ADD COLUMN lease_until timestamptz;
