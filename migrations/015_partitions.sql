-- 015_partitions: the event log becomes range-partitioned by position (issue 17), so an
-- append's cost stops growing with the size of history and retention can drop a whole
-- partition instead of deleting row by row.
--
-- What changes, and why:
--   * `events` is the partitioned parent; the table as it was becomes its first partition,
--     events_p0, for every position up to the head (attached without a second scan: a CHECK
--     constraint proves the range first). Sluice creates the next partitions itself, each
--     SLUICE_PARTITION_EVENTS positions wide, ahead of need (server/partitions.c).
--   * A unique constraint of a partitioned table must contain the partition key, so
--     (tenant_id, id) — the idempotency key — moves to event_ids, one row per event, whose
--     primary key keeps the constraint's name `events_tenant_id` (the appender recognises a
--     re-sent id by it). A read by id looks the position up there: one index probe, then
--     the one partition that holds it, never every partition.
--   * (tenant_id, stream, key, version) can no longer be unique across partitions. Versions
--     were always decided under the event-log lock (the appender), which stays their guard;
--     the index becomes (tenant_id, stream, key, position), which finds a key's newest
--     event in the newest partition that has one.
--   * key_heads, which held the versions of keys whose events had expired, now holds every
--     key's current version, kept by the appender's INSERT: a key's version is one
--     primary-key probe instead of a search through every partition.
-- The conversion rewrites nothing of `events`: renames, one CHECK scan, the key index, and
-- event_ids filled from the table (1,000,000 events: a few seconds; README, "Scaling out").
ALTER TABLE events RENAME TO events_p0;
ALTER TABLE events_p0 DROP CONSTRAINT events_tenant_id;
DROP INDEX events_tenant_key_version;
ALTER INDEX events_pkey RENAME TO events_p0_pkey;
ALTER INDEX events_tenant_correlation RENAME TO events_p0_tenant_correlation;
ALTER INDEX events_tenant_position RENAME TO events_p0_tenant_position;
ALTER INDEX events_tenant_stream RENAME TO events_p0_tenant_stream;
ALTER INDEX events_tenant_type RENAME TO events_p0_tenant_type;
ALTER INDEX events_tenant_user RENAME TO events_p0_tenant_user;
ALTER INDEX events_time RENAME TO events_p0_time;

CREATE TABLE events (LIKE events_p0 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (position);
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (position);
CREATE INDEX events_tenant_correlation ON events (tenant_id, correlation_id, position);
CREATE INDEX events_tenant_position ON events (tenant_id, position);
CREATE INDEX events_tenant_stream ON events (tenant_id, stream, position);
CREATE INDEX events_tenant_type ON events (tenant_id, type, position);
CREATE INDEX events_tenant_user ON events (tenant_id, user_id, position) WHERE user_id IS NOT NULL;
CREATE INDEX events_time ON events USING brin (time);
CREATE INDEX events_tenant_key_position ON events (tenant_id, stream, key, position)
    WHERE key IS NOT NULL;

-- The old table holds positions 1..head: it becomes the partition [MINVALUE, head + 1).
DO $$
DECLARE
    upper_bound bigint := (SELECT coalesce(max(position), 0) + 1 FROM events_p0);
BEGIN
    EXECUTE format('ALTER TABLE events_p0 ADD CONSTRAINT events_p0_range '
                   'CHECK (position IS NOT NULL AND position < %s)', upper_bound);
    EXECUTE 'CREATE INDEX events_p0_tenant_key_position ON events_p0 '
            '(tenant_id, stream, key, position) WHERE key IS NOT NULL';
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_p0 FOR VALUES FROM (MINVALUE) '
                   'TO (%s)', upper_bound);
    ALTER TABLE events_p0 DROP CONSTRAINT events_p0_range;
END
$$;

CREATE TABLE event_ids (
    tenant_id  text   NOT NULL,
    id         text   NOT NULL,
    position   bigint NOT NULL,
    CONSTRAINT events_tenant_id PRIMARY KEY (tenant_id, id)
);
-- Retention deletes a dropped partition's ids by position range; positions only grow,
-- so a BRIN index finds them at next to no cost per append.
CREATE INDEX event_ids_position ON event_ids USING brin (position);
INSERT INTO event_ids (tenant_id, id, position) SELECT tenant_id, id, position FROM events_p0;

INSERT INTO key_heads (tenant_id, stream, key, version)
    SELECT tenant_id, stream, key, max(version) FROM events_p0 WHERE key IS NOT NULL
    GROUP BY tenant_id, stream, key
    ON CONFLICT (tenant_id, stream, key) DO UPDATE SET version = GREATEST(key_heads.version, EXCLUDED.version);
