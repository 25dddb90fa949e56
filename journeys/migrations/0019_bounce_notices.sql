-- Bounce notices: every mail that reached the bounce address (a delivery-status
-- notification, a feedback report, or anything else sent there), taken by the SMTP/LMTP
-- listener or the IMAP poller (`journeys bounces serve`).
--
-- outcome: recorded (a delivery error of the message its signed bounce address names,
-- through the outbox), ignored (a genuine notice that reports no error: a success DSN,
-- feedback other than a complaint), orphan (genuine, but its message is gone), kept
-- (forged, unparseable or inconsistent: nothing recorded, the mail kept in `raw` with
-- the reason, for inspection; `journeys bounces kept`, GET /bounces/kept).
CREATE TABLE bounce_notices (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    via         text NOT NULL,            -- smtp | lmtp | imap
    envelope_to text[] NOT NULL,          -- the addresses it was delivered to
    digest      bytea NOT NULL,           -- SHA-256 of the mail: taken once however often it comes
    outcome     text NOT NULL CHECK (outcome IN ('recorded', 'ignored', 'orphan', 'kept')),
    reason      text,                     -- why it was kept (or ignored)
    message_id  uuid,                     -- the message a genuine bounce address names
    report      text,                     -- dsn | arf
    kind        text,                     -- hard_bounce | soft_bounce | complaint
    detail      text,
    size        integer NOT NULL,         -- of the whole mail, in bytes
    raw         bytea                     -- kept notices only (the first MB)
);
CREATE UNIQUE INDEX bounce_notices_digest ON bounce_notices (digest);
CREATE INDEX bounce_notices_received ON bounce_notices (received_at);
CREATE INDEX bounce_notices_kept ON bounce_notices (id) WHERE outcome = 'kept';
