-- Fingerprints were SHA-256 of 'name:namespace:kind:resource', so parts containing ':' could collide
-- ('job:disk_full:ratio' in 'prod' = 'job' in 'disk_full:ratio:prod'). They are now SHA-256 of the parts
-- length-prefixed ('<bytes>:<part>' each; kubernaut.gateway.signal.identity_digest). Every stored
-- fingerprint is recomputed from the identity columns, so an alert open before the upgrade meets its own
-- request in the unique index over open requests (a duplicate, never a second request); dedup entries
-- left in Redis under old fingerprints are never looked up again and expire.
CREATE FUNCTION kubernaut_identity_digest(VARIADIC parts text[]) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT encode(sha256(coalesce(string_agg(
               convert_to(octet_length(convert_to(p, 'UTF8'))::text || ':', 'UTF8') || convert_to(p, 'UTF8'),
               ''::bytea ORDER BY i), ''::bytea)), 'hex')
    FROM unnest(parts) WITH ORDINALITY AS u(p, i)
$$;

-- Storm members share their storm's alert name and namespace; their resource is 'Kind/name' (or '').
UPDATE storm_members m
SET fingerprint = coalesce(kubernaut_identity_digest(
        r.signal_name, r.namespace,
        split_part(m.resource, '/', 1), substr(m.resource, strpos(m.resource, '/') + 1)), m.fingerprint)
FROM remediation_requests r
WHERE r.id = m.request_id;

UPDATE remediation_requests
SET fingerprint = coalesce(CASE
    WHEN is_storm THEN kubernaut_identity_digest(
        'storm', storm_type, signal_name, namespace,
        round(extract(epoch FROM storm_window_start) * 1000)::bigint::text)
    ELSE kubernaut_identity_digest(signal_name, namespace, resource_kind, resource_name)
END, fingerprint);
