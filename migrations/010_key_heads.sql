-- 010_key_heads: a (stream, key)'s version never goes back. Retention deletes expired
-- events; before it does, it keeps here the highest version it deletes of each key, and
-- the appender takes the greater of this and the highest stored version as the key's
-- current one. Without it, a key whose events had all expired would start again at 1.
CREATE TABLE key_heads (
    tenant_id  text   NOT NULL,
    stream     text   NOT NULL,
    key        text   NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (tenant_id, stream, key)
);
