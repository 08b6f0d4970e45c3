-- 014_webhooks: push delivery to HTTP endpoints (issue 16).
--   webhooks         a tenant's endpoints: where, what (filter), how (retry policy, timeout,
--                    rate, ordering, headers), the signing secret (and the previous one
--                    during a rotation), whether it is paused, and its checkpoint: every
--                    event at or below it was delivered, dead-lettered, or is in
--                    webhook_retries (at least once across restarts and leader changes).
--   webhook_retries  deliveries that failed and wait for their next attempt, events held
--                    back behind an earlier one of their key (ordering "key": attempts 0),
--                    and dead letters being reprocessed (dead_letter_id).
-- A webhook's dead letters are dead_letters rows with source 'webhook:<name>'.
CREATE TABLE webhooks (
    tenant_id       text        NOT NULL,
    name            text        NOT NULL,
    url             text        NOT NULL,
    filter          jsonb,
    max_deliveries  integer     NOT NULL DEFAULT 5 CHECK (max_deliveries >= 1),
    strategy        text        NOT NULL DEFAULT 'exponential'
                                CHECK (strategy IN ('exponential', 'linear', 'fixed')),
    base_delay_ms   integer     NOT NULL DEFAULT 1000,
    max_delay_ms    integer     NOT NULL DEFAULT 30000,
    jitter          boolean     NOT NULL DEFAULT true,
    timeout_ms      integer     NOT NULL DEFAULT 10000,
    max_per_second  integer,
    ordering        text        NOT NULL DEFAULT 'none' CHECK (ordering IN ('none', 'key')),
    headers         jsonb       NOT NULL DEFAULT '{}',
    secret          text        NOT NULL,
    previous_secret text,
    previous_until  timestamptz,
    status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    paused_reason   text,
    checkpoint      bigint      NOT NULL,
    delivered       bigint      NOT NULL DEFAULT 0,
    failed          bigint      NOT NULL DEFAULT 0,
    failing_since   timestamptz,
    last_success_at timestamptz,
    last_failure    jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE webhook_retries (
    tenant_id      text        NOT NULL,
    webhook        text        NOT NULL,
    position       bigint      NOT NULL,
    attempts       integer     NOT NULL,
    next_at        timestamptz NOT NULL,
    errors         jsonb       NOT NULL DEFAULT '[]',
    dead_letter_id bigint,
    PRIMARY KEY (tenant_id, webhook, position),
    FOREIGN KEY (tenant_id, webhook) REFERENCES webhooks (tenant_id, name) ON DELETE CASCADE
);

CREATE UNIQUE INDEX dead_letters_webhook_event ON dead_letters (tenant_id, source, event_position)
    WHERE source LIKE 'webhook:%';
