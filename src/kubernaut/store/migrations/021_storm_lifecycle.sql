-- Storm lifecycle (issue 12 item 7): a member's resolution is recorded on its storm_members row and the
-- storm request closes once every member has resolved; requests opened by alerts of the storm's group
-- in the detection window before the storm was detected point at it.
ALTER TABLE storm_members ADD COLUMN resolved_at timestamptz;
ALTER TABLE remediation_requests
    ADD COLUMN storm_request_id bigint REFERENCES remediation_requests (id) ON DELETE SET NULL;
CREATE INDEX remediation_requests_storm_request_id ON remediation_requests (storm_request_id)
    WHERE storm_request_id IS NOT NULL;
