-- Alert times (issue 12 item 6): first_seen / resolved_at now come from the alert's own startsAt /
-- endsAt when sane; the gateway's receipt times get columns of their own.
ALTER TABLE remediation_requests
    ADD COLUMN received_at          timestamptz,
    ADD COLUMN resolved_received_at timestamptz;
UPDATE remediation_requests SET received_at = first_seen, resolved_received_at = resolved_at;
ALTER TABLE remediation_requests
    ALTER COLUMN received_at SET DEFAULT now(),
    ALTER COLUMN received_at SET NOT NULL;

ALTER TABLE storm_members ADD COLUMN received_at timestamptz;
UPDATE storm_members SET received_at = first_seen;
ALTER TABLE storm_members
    ALTER COLUMN received_at SET DEFAULT now(),
    ALTER COLUMN received_at SET NOT NULL;
