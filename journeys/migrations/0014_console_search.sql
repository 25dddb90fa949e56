-- The console (issue 12) searches contacts by the start of an external id or of an
-- e-mail address (case-insensitive), lists the latest contacts, and filters the message
-- log on bounces. `LIKE 'prefix%'` uses a btree only under the C collation or with the
-- pattern operator class; without these, each search read every contact.
CREATE INDEX contacts_email_prefix ON contacts (lower(email) text_pattern_ops);
CREATE INDEX contacts_external_id_prefix ON contacts (external_id text_pattern_ops);
CREATE INDEX contacts_recent ON contacts (created_at DESC);
CREATE INDEX message_events_delivery_errors ON message_events (message_id)
    WHERE kind = 'delivery_error';
