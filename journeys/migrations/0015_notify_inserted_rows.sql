-- The outbox triggers notified the dispatchers after every INSERT statement on the
-- event tables, also one that inserted no row. Marking a page of mails sent is such
-- a statement (it inserts `sent` events only for messages with follow-ups): each
-- group commit of a bulk send woke every dispatcher for a claim that found nothing.
-- Now the trigger fires per inserted row. PostgreSQL sends a transaction's identical
-- notifications once, so a statement that stores many events still wakes the
-- dispatchers once. (A statement trigger that asks its transition table whether rows
-- came runs a query per statement: 0.76 ms of trigger time in one EXPLAIN ANALYZE of a
-- mark-sent, on a fresh connection.)
DROP TRIGGER message_events_notify ON message_events;
DROP TRIGGER contact_events_notify ON contact_events;
CREATE TRIGGER message_events_notify AFTER INSERT ON message_events
    FOR EACH ROW EXECUTE FUNCTION journeys_notify_event();
CREATE TRIGGER contact_events_notify AFTER INSERT ON contact_events
    FOR EACH ROW EXECUTE FUNCTION journeys_notify_event();
