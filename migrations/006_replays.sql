-- 006_replays: jobs that re-publish a filtered range of the log into a Redis
-- stream. `position` is the checkpoint: a job resumes from it after a restart.
CREATE TABLE replays (
    id            text        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    filter        jsonb       NOT NULL,
    target        text        NOT NULL,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'done', 'cancelled', 'failed')),
    position      bigint      NOT NULL,
    to_position   bigint      NOT NULL,
    replayed      bigint      NOT NULL DEFAULT 0,
    total         bigint,
    max_per_second integer    NOT NULL DEFAULT 5000,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replays_tenant ON replays (tenant_id, created_at);
