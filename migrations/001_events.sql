-- 001_events: the event log, Sluice's source of truth (ARCHITECTURE.md).
-- position is assigned by the appender under pg_advisory_xact_lock, gap-free in
-- commit order; (tenant_id, id) is the idempotency key; (tenant_id, stream, key,
-- version) is optimistic concurrency's unique guard.
CREATE TABLE events (
    position        bigint      PRIMARY KEY,
    id              text        NOT NULL,
    tenant_id       text        NOT NULL,
    stream          text        NOT NULL,
    key             text,
    version         bigint,
    type            text        NOT NULL,
    schema_version  integer,
    correlation_id  text        NOT NULL,
    causation_id    text,
    user_id         text,
    source          text,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    time            timestamptz NOT NULL,
    content_hash    text        NOT NULL,
    CONSTRAINT events_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT events_key_version CHECK ((key IS NULL) = (version IS NULL))
);

CREATE UNIQUE INDEX events_tenant_key_version ON events (tenant_id, stream, key, version)
    WHERE key IS NOT NULL;
CREATE INDEX events_tenant_position ON events (tenant_id, position);
CREATE INDEX events_tenant_stream ON events (tenant_id, stream, position);
CREATE INDEX events_tenant_type ON events (tenant_id, type, position);
CREATE INDEX events_tenant_correlation ON events (tenant_id, correlation_id, position);
CREATE INDEX events_tenant_user ON events (tenant_id, user_id, position) WHERE user_id IS NOT NULL;
CREATE INDEX events_time ON events USING brin (time);
