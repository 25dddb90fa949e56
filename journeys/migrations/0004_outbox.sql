-- Events are stored first and delivered from an outbox: the HTTP handler inserts
-- one row and answers; the worker's dispatcher delivers undelivered rows.
--
-- A row is undelivered while delivered_at is NULL. next_attempt_at is when a
-- dispatcher may take it: a claim moves it a lease ahead (a dispatcher that dies
-- mid-delivery leaves the row to another one after the lease), a failed delivery
-- moves it a backoff ahead.

ALTER TABLE message_events
    ADD COLUMN delivered_at    timestamptz,
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error      text,
    -- Given by the API to each open or click: a hit stored late (after an outage)
    -- whose first insert did get through is not stored twice.
    ADD COLUMN hit_id          uuid UNIQUE;
-- What was there before the outbox was delivered (or lost) by the code of its day.
UPDATE message_events SET delivered_at = at;
CREATE INDEX message_events_undelivered ON message_events (next_attempt_at)
    WHERE delivered_at IS NULL;

-- kind: 'custom' (POST /events) or 'profile_change' (POST /contacts changed fields;
-- data holds {"fields": [...], "values": {...}}).
ALTER TABLE contact_events
    ADD COLUMN kind            text NOT NULL DEFAULT 'custom',
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error      text,
    ADD COLUMN entries         jsonb;
UPDATE contact_events SET delivered_at = at, delivered_to = COALESCE(delivered_to, '{}')
    WHERE delivered_at IS NULL;
CREATE INDEX contact_events_undelivered ON contact_events (next_attempt_at)
    WHERE delivered_at IS NULL;

-- One notification per inserting statement wakes the dispatchers at once; their
-- poll is the safety net for a notification missed while they were reconnecting.
CREATE FUNCTION journeys_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('journeys_events', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER message_events_notify AFTER INSERT ON message_events
    FOR EACH STATEMENT EXECUTE FUNCTION journeys_notify_event();
CREATE TRIGGER contact_events_notify AFTER INSERT ON contact_events
    FOR EACH STATEMENT EXECUTE FUNCTION journeys_notify_event();
