-- Resolutions and firings of one fingerprint committed in another order than Redis ran them (two gateway
-- processes racing) must leave PostgreSQL as that order would (issue 12, item 1 remainder).
--
-- The ingest script gives every signal that goes to PostgreSQL its place in the Redis master's order
-- (`seq`, a microsecond clock that never goes back). A resolution starts a new *period* of its
-- fingerprint, named by its seq; a firing carries the period Redis saw it in (the resolution tombstone
-- left in its dedup entry, else 0). A request belongs to the period it was opened in. Then:
--   - a resolution at seq r closes every open request of its fingerprint opened in a period before r,
--     and is recorded in gateway_resolutions (which is how a firing committed later learns of it);
--   - a firing at seq s counts onto the request of its period p (the latest period PostgreSQL or Redis
--     knows that started before s), open or already closed; with none it opens one, closed at once if
--     p has already ended (a recorded resolution after s, or a request of a later period), and closes
--     the open requests of earlier periods whose resolution is still on its way.
-- Each fingerprint's work takes a transaction-level advisory lock, so two transactions touching one
-- fingerprint see each other's effects.

ALTER TABLE remediation_requests ADD COLUMN period bigint;
-- Requests open across the upgrade: period 1 (before any seq). Closed ones keep NULL: never counted onto.
UPDATE remediation_requests SET period = 1
WHERE NOT is_storm AND resolved_at IS NULL AND phase IN ('pending', 'processing');
CREATE INDEX remediation_requests_fingerprint_period ON remediation_requests (fingerprint, period)
    WHERE period IS NOT NULL;

CREATE TABLE gateway_resolutions (
    fingerprint text        NOT NULL,
    seq         bigint      NOT NULL,
    resolved_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (fingerprint, seq)
);

-- One row per firing (or run of firings of one fingerprint in one period), applied in array order:
-- a_rcv the receipt time of its webhook, a_ls its last_seen (the latest of its alert and receipt times).
CREATE FUNCTION kubernaut_fire(
    a_f text[], a_n text[], a_type text[], a_source text[], a_sev text[], a_ns text[], a_kind text[],
    a_res text[], a_env text[], a_pri text[], a_l text[], a_a text[], a_c bigint[], a_fs timestamptz[],
    a_ls timestamptz[], a_rcv timestamptz[], a_period bigint[], a_seq bigint[])
RETURNS TABLE (o_id bigint, o_fingerprint text, o_inserted boolean)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    p bigint;
    rid bigint;
    nxt gateway_resolutions%ROWTYPE;
    closed_at timestamptz;
    closed_received timestamptz;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(a_f), 0) LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(a_f[i], 70));
        p := greatest(
            a_period[i],
            (SELECT max(g.seq) FROM gateway_resolutions g WHERE g.fingerprint = a_f[i] AND g.seq < a_seq[i]),
            (SELECT max(r.period) FROM remediation_requests r
             WHERE r.fingerprint = a_f[i] AND r.period < a_seq[i]));
        SELECT r.id INTO rid FROM remediation_requests r
        WHERE r.fingerprint = a_f[i] AND r.period = p
          AND (r.resolved_at IS NOT NULL OR r.phase IN ('pending', 'processing'))
        ORDER BY r.id DESC LIMIT 1;
        IF rid IS NOT NULL THEN
            UPDATE remediation_requests r
            SET occurrence_count = r.occurrence_count + a_c[i],
                last_seen = greatest(r.last_seen, a_ls[i]), updated_at = now()
            WHERE r.id = rid;
            o_id := rid; o_fingerprint := a_f[i]; o_inserted := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- Open requests of earlier periods: their resolution ran in Redis before this firing and has
        -- not been committed yet (it will find them closed).
        UPDATE remediation_requests r
        SET resolved_at = greatest(r.first_seen, a_rcv[i]), resolved_received_at = a_rcv[i],
            updated_at = now()
        WHERE r.fingerprint = a_f[i] AND NOT r.is_storm AND coalesce(r.period, 0) < p
          AND r.resolved_at IS NULL AND r.phase IN ('pending', 'processing');
        SELECT * INTO nxt FROM gateway_resolutions g
        WHERE g.fingerprint = a_f[i] AND g.seq > a_seq[i] ORDER BY g.seq LIMIT 1;
        closed_at := nxt.resolved_at;
        closed_received := nxt.received_at;
        IF closed_at IS NULL AND EXISTS (
            SELECT 1 FROM remediation_requests r WHERE r.fingerprint = a_f[i] AND r.period > p
        ) THEN
            closed_at := a_rcv[i];
            closed_received := a_rcv[i];
        END IF;
        INSERT INTO remediation_requests (
            fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind,
            resource_name, environment, priority, labels, annotations, first_seen, last_seen,
            occurrence_count, received_at, period, resolved_at, resolved_received_at)
        VALUES (
            a_f[i], a_n[i], a_type[i], a_source[i], a_sev[i], a_ns[i], a_kind[i], a_res[i], a_env[i],
            a_pri[i], a_l[i]::jsonb, a_a[i]::jsonb, a_fs[i], a_ls[i], a_c[i], a_rcv[i], p,
            CASE WHEN closed_at IS NOT NULL THEN greatest(a_fs[i], closed_at) END, closed_received)
        RETURNING id INTO rid;
        o_id := rid; o_fingerprint := a_f[i]; o_inserted := true;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE FUNCTION kubernaut_resolve(a_f text[], a_t timestamptz[], a_rcv timestamptz[], a_seq bigint[])
RETURNS TABLE (o_id bigint, o_fingerprint text)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(a_f), 0) LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(a_f[i], 70));
        INSERT INTO gateway_resolutions (fingerprint, seq, resolved_at, received_at)
        VALUES (a_f[i], a_seq[i], a_t[i], a_rcv[i]) ON CONFLICT DO NOTHING;
        -- An alert's endsAt before the request's first_seen (two alerts of one fingerprint) closes it at
        -- first_seen.
        RETURN QUERY
        UPDATE remediation_requests r
        SET resolved_at = greatest(r.first_seen, a_t[i]), resolved_received_at = a_rcv[i],
            last_seen = greatest(r.last_seen, a_t[i]), updated_at = now()
        WHERE r.fingerprint = a_f[i] AND NOT r.is_storm AND coalesce(r.period, 0) < a_seq[i]
          AND r.resolved_at IS NULL AND r.phase IN ('pending', 'processing')
        RETURNING r.id, r.fingerprint;
    END LOOP;
END $$;
