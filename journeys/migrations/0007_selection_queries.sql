-- Query selections: the condition of `branch`, compiled to SQL when counted, paged or
-- frozen. Equality on a free field is compiled to containment (`fields @> ...`), which
-- this index answers whatever the field's name.
ALTER TABLE selections ADD COLUMN query jsonb;
CREATE INDEX contacts_fields ON contacts USING gin (fields jsonb_path_ops);
