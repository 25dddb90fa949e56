-- The console (issue 12) pages through a journey's latest enrolments and the message
-- log, newest first; without these, each page sorted every row of the journey or log.
CREATE INDEX enrolments_journey_recent ON enrolments (journey_key, enrolled_at DESC);
CREATE INDEX messages_recent ON messages (created_at DESC);
