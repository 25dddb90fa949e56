-- Console sessions, so that signing out ends a session on the server, not only in the
-- browser that signed out: a copy of the cookie (a shared computer, a proxy's log) is
-- of no use afterwards. The signed cookie names its row; the row says whether it ended.
CREATE TABLE console_sessions (
    id          uuid PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz
);
CREATE INDEX console_sessions_started ON console_sessions (started_at);
