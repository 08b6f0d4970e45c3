-- 004_stream_settings: per-stream settings of a tenant. max_age_ms is the
-- store's retention: the leader deletes older events of the stream in small
-- batches (NULL = keep forever, the default).
CREATE TABLE stream_settings (
    tenant_id   text        NOT NULL,
    stream      text        NOT NULL,
    max_age_ms  bigint      CHECK (max_age_ms IS NULL OR max_age_ms > 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stream)
);
