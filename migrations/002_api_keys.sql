-- 002_api_keys: API keys. Only the SHA-256 of a token is stored; the token is
-- shown once, when the key is created. id 'admin' is the bootstrap admin key.
CREATE TABLE api_keys (
    id          text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    name        text,
    scopes      text[]      NOT NULL,
    token_hash  text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
