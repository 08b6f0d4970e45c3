-- 011_occurred_at: when an event happened, as its producer says (issue 15): the seed
-- producers' BaseEvent `timestamp`, CloudEvents `time`, or the envelope's `occurred_at`.
-- Beside `time`, which stays Sluice's ingestion time. NULL when the producer gave none;
-- events stored before this migration have none.
ALTER TABLE events ADD COLUMN occurred_at timestamptz;

-- A dead letter keeps a copy of its stored envelope, and every stored envelope has the
-- field (null when absent): the copies made before now get it as null.
UPDATE dead_letters SET event = event || '{"occurred_at": null}'::jsonb
    WHERE jsonb_typeof(event) = 'object' AND NOT event ? 'occurred_at';
