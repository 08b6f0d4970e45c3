-- 005_projections: live read models and the dead letters they (and, later,
-- consumer groups) produce. A projection's checkpoint (position) is updated in
-- the same transaction as its states, so each event is applied exactly once.
CREATE TABLE projections (
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    definition  jsonb       NOT NULL,
    status      text        NOT NULL DEFAULT 'catching_up'
                CHECK (status IN ('catching_up', 'live', 'failed')),
    position    bigint      NOT NULL DEFAULT 0,
    generation  integer     NOT NULL DEFAULT 0, -- bumped by reset: a batch of an older one is dropped
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE projection_state (
    tenant_id  text   NOT NULL,
    name       text   NOT NULL,
    key        text   NOT NULL, -- '' for a projection without a key (one global state)
    state      jsonb  NOT NULL,
    position   bigint NOT NULL, -- the last event applied to this key
    PRIMARY KEY (tenant_id, name, key),
    FOREIGN KEY (tenant_id, name) REFERENCES projections ON DELETE CASCADE
);

CREATE TABLE dead_letters (
    id              bigserial   PRIMARY KEY,
    tenant_id       text        NOT NULL,
    source          text        NOT NULL, -- 'group' or 'projection:<name>'
    stream          text        NOT NULL,
    group_name      text,
    consumer        text,
    event_id        text        NOT NULL,
    event_position  bigint      NOT NULL,
    delivery_count  integer     NOT NULL DEFAULT 0,
    errors          jsonb       NOT NULL DEFAULT '[]',
    status          text        NOT NULL DEFAULT 'open',
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    history         jsonb       NOT NULL DEFAULT '[]'
);
CREATE INDEX dead_letters_tenant ON dead_letters (tenant_id, status, id);
CREATE UNIQUE INDEX dead_letters_projection_event ON dead_letters (tenant_id, source, event_position)
    WHERE source LIKE 'projection:%';
