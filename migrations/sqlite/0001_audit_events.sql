-- One row per encode, decode or denial (DESIGN §7). Never tokens, keys or payload bytes.
-- time_ms: Unix time in milliseconds, UTC.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms       INTEGER NOT NULL,
    request_id    TEXT    NOT NULL,
    email         TEXT,
    subject       TEXT,
    issuer        TEXT,
    namespace     TEXT    NOT NULL,
    operation     TEXT    NOT NULL,
    payload_count INTEGER NOT NULL,
    decoded_count INTEGER NOT NULL,
    kek_refs      TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    reason        TEXT,
    http_status   INTEGER NOT NULL,
    client_addr   TEXT,
    user_agent    TEXT
);

CREATE INDEX audit_events_namespace_time ON audit_events (namespace, time_ms);
CREATE INDEX audit_events_email_time ON audit_events (email, time_ms);
CREATE INDEX audit_events_time ON audit_events (time_ms);
