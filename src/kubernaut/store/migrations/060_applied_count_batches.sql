-- Duplicate-count batches the gateway has added to remediation_requests, recorded in the same statement
-- as the counts: a batch flushed again (its acknowledgement to Redis was lost, or a crashed gateway's batch
-- was adopted by another) finds its id here and adds nothing. Rows older than the gateway's
-- count_batch_retention are pruned by the gateway.
CREATE TABLE applied_count_batches (
    batch_id text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applied_count_batches_applied_at ON applied_count_batches (applied_at);
