-- Redis ingest calls the gateway refused (503) without knowing whether they ran: a hung master may still
-- run one when it resumes. Each is voided on every master for a minute (gateway/scripts/void.lua) by
-- whichever gateway instance is alive, not only by the one that refused it, which may be gone (killed,
-- or stopped by a rolling update). Rows are pruned by the gateway after ten minutes.
CREATE TABLE refused_calls (
    nonce text PRIMARY KEY,
    key_prefix text NOT NULL,  -- the gateway's Redis key prefix: the keyspace the call ran in
    refused_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refused_calls_refused_at ON refused_calls (refused_at);
