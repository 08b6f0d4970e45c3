-- 003_schemas: the schema registry. One registry for the whole deployment, as
-- in Confluent Schema Registry: event types and their versions are shared by
-- every tenant (events stay tenant-private). Writes need the `schemas` scope.
CREATE TABLE schema_types (
    type           text        PRIMARY KEY,
    stream         text        NOT NULL,
    description    text,
    compatibility  text        NOT NULL DEFAULT 'BACKWARD',
    deprecated_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schema_versions (
    type         text        NOT NULL REFERENCES schema_types (type),
    version      integer     NOT NULL,
    schema       jsonb       NOT NULL,
    fingerprint  text        NOT NULL, -- SHA-256 of the schema's canonical JSON
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (type, version)
);
