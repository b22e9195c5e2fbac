-- RemediationRequests (written by the gateway) and their outcomes (recorded through the Context-API).
CREATE TABLE remediation_requests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint         text        NOT NULL,
    signal_name         text        NOT NULL,           -- alertname, or the event reason
    signal_type         text        NOT NULL CHECK (signal_type IN ('prometheus', 'kubernetes-event')),
    source              text        NOT NULL,           -- token name or client address
    severity            text        NOT NULL,
    namespace           text        NOT NULL,
    resource_kind       text        NOT NULL,
    resource_name       text        NOT NULL,
    environment         text        NOT NULL DEFAULT 'unknown',
    priority            text        NOT NULL DEFAULT 'P2',
    labels              jsonb       NOT NULL DEFAULT '{}',
    annotations         jsonb       NOT NULL DEFAULT '{}',
    phase               text        NOT NULL DEFAULT 'pending'
                                    CHECK (phase IN ('pending', 'processing', 'completed', 'failed')),
    first_seen          timestamptz NOT NULL,
    last_seen           timestamptz NOT NULL,
    occurrence_count    bigint      NOT NULL DEFAULT 1 CHECK (occurrence_count >= 1),
    resolved_at         timestamptz,
    is_storm            boolean     NOT NULL DEFAULT false,
    storm_type          text        CHECK (storm_type IN ('rate', 'pattern')),
    storm_alert_count   bigint      NOT NULL DEFAULT 0,
    affected_resources  text[]      NOT NULL DEFAULT '{}',
    affected_overflow   bigint      NOT NULL DEFAULT 0,
    storm_window_start  timestamptz,
    storm_window_end    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Invariant 2: one open request per fingerprint, whatever Redis remembers.
CREATE UNIQUE INDEX remediation_requests_one_open
    ON remediation_requests (fingerprint)
    WHERE resolved_at IS NULL AND phase IN ('pending', 'processing');

CREATE INDEX remediation_requests_first_seen ON remediation_requests (first_seen DESC, id DESC);
CREATE INDEX remediation_requests_namespace ON remediation_requests (namespace, first_seen DESC);
CREATE INDEX remediation_requests_signal_name ON remediation_requests (signal_name, first_seen DESC);
CREATE INDEX remediation_requests_fingerprint ON remediation_requests (fingerprint);

-- The alerts a storm request took in, so every accepted fingerprint can be traced to a request.
CREATE TABLE storm_members (
    request_id   bigint NOT NULL REFERENCES remediation_requests (id) ON DELETE CASCADE,
    fingerprint  text   NOT NULL,
    resource     text   NOT NULL,
    first_seen   timestamptz NOT NULL,
    PRIMARY KEY (request_id, fingerprint)
);
CREATE INDEX storm_members_fingerprint ON storm_members (fingerprint);

CREATE TABLE remediation_outcomes (
    request_id   bigint      PRIMARY KEY REFERENCES remediation_requests (id) ON DELETE CASCADE,
    action       text        NOT NULL,
    succeeded    boolean     NOT NULL,
    detail       text        NOT NULL DEFAULT '',
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX remediation_outcomes_recorded_at ON remediation_outcomes (recorded_at);
