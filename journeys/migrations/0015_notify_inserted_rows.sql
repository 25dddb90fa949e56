-- The outbox triggers notified the dispatchers after every INSERT statement on the
-- event tables, also one that inserted no row. Marking a page of mails sent is such
-- a statement (it inserts `sent` events only for messages with follow-ups): each
-- group commit of a bulk send woke every dispatcher for a claim that found nothing.
-- Now only a statement that inserted rows notifies.
CREATE OR REPLACE FUNCTION journeys_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM inserted) THEN
        PERFORM pg_notify('journeys_events', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER message_events_notify ON message_events;
DROP TRIGGER contact_events_notify ON contact_events;
CREATE TRIGGER message_events_notify AFTER INSERT ON message_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION journeys_notify_inserted();
CREATE TRIGGER contact_events_notify AFTER INSERT ON contact_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION journeys_notify_inserted();
DROP FUNCTION journeys_notify_event();
