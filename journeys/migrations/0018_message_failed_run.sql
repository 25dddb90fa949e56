-- The workflow run whose attempt failed a message for good (a template error). A retry
-- of that run finds the message failed; another run of the chain (a reset's) claims it
-- again, once (activities/sends.py).
ALTER TABLE messages ADD COLUMN failed_run_id text;
