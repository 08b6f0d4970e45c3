-- 013_dead_letter_events: the dead letters of one event, found by its id
-- (GET /v1/dead-letters?event_id=, POST /v1/dead-letters/reprocess {"event_ids"}), and the
-- claim of a running batch redrive: a letter it selected is not selected by another batch
-- (a re-sent request) until it ends, or until redrive_until if it never does.
ALTER TABLE dead_letters ADD COLUMN redrive_until timestamptz;
CREATE INDEX dead_letters_event ON dead_letters (tenant_id, event_id);
