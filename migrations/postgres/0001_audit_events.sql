-- One row per encode, decode or denial (DESIGN §7). Never tokens, keys or payload bytes.
-- time_ms: Unix time in milliseconds, UTC (the same column in SQLite and PostgreSQL);
-- the view audit_events_readable adds it as a timestamptz for people querying by hand.
CREATE TABLE audit_events (
    id            BIGSERIAL PRIMARY KEY,
    time_ms       BIGINT NOT NULL,
    request_id    TEXT   NOT NULL,
    email         TEXT,
    subject       TEXT,
    issuer        TEXT,
    namespace     TEXT   NOT NULL,
    operation     TEXT   NOT NULL,
    payload_count BIGINT NOT NULL,
    decoded_count BIGINT NOT NULL,
    kek_refs      TEXT   NOT NULL,
    outcome       TEXT   NOT NULL,
    reason        TEXT,
    http_status   BIGINT NOT NULL,
    client_addr   TEXT,
    user_agent    TEXT
);

CREATE INDEX audit_events_namespace_time ON audit_events (namespace, time_ms);
CREATE INDEX audit_events_email_time ON audit_events (email, time_ms);
CREATE INDEX audit_events_time ON audit_events (time_ms);

CREATE VIEW audit_events_readable AS
    SELECT to_timestamp(time_ms / 1000.0) AS occurred_at, * FROM audit_events;
