-- 007_groups: consumer-group policies, the failures of deliveries in
-- progress, and what a dead letter keeps of its event.
CREATE TABLE consumer_groups (
    tenant_id       text        NOT NULL,
    stream          text        NOT NULL,
    name            text        NOT NULL,
    start           text        NOT NULL,
    max_deliveries  integer     NOT NULL DEFAULT 3 CHECK (max_deliveries >= 1),
    base_delay_ms   integer     NOT NULL DEFAULT 1000 CHECK (base_delay_ms >= 0),
    max_delay_ms    integer     NOT NULL DEFAULT 30000 CHECK (max_delay_ms >= 0),
    jitter          boolean     NOT NULL DEFAULT true,
    ack_timeout_ms  integer     NOT NULL DEFAULT 30000 CHECK (ack_timeout_ms >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stream, name)
);

-- Why deliveries failed so far (nack reasons, timeouts), per group and event.
CREATE TABLE delivery_failures (
    tenant_id   text        NOT NULL,
    stream      text        NOT NULL,
    group_name  text        NOT NULL,
    position    bigint      NOT NULL,
    consumer    text,
    errors      jsonb       NOT NULL DEFAULT '[]',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stream, group_name, position)
);

ALTER TABLE dead_letters ADD COLUMN type text;
ALTER TABLE dead_letters ADD COLUMN event jsonb;
CREATE UNIQUE INDEX dead_letters_group_event
    ON dead_letters (tenant_id, stream, group_name, event_position) WHERE source = 'group';
