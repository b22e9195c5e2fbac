-- Storm members joined in Redis (gateway/scripts/ingest.lua, "Bound storms") reach PostgreSQL with the
-- count flusher's batches. joined_by names the ingest call that joined one: if that call is voided (the
-- gateway answered 503 without knowing whether it ran), the flusher deletes the row it wrote. A member
-- taken in by PostgreSQL itself (a webhook's own commit) has none, and takes a row over by clearing it.
ALTER TABLE storm_members ADD COLUMN joined_by text;
