-- 009_schema_tenants: sealed tenants for the schema registry. Every type now lives in a
-- namespace named by a tenant: tenant 'default' holds the global namespace (the shipped
-- catalog and what tenant default registers), which every tenant publishes against; any
-- other tenant's rows are its private namespace, seen by that tenant alone and looked up
-- before the global one. The rows that exist are the one shared registry of before: global.
-- The column has no default afterwards, so a statement that forgets the namespace fails
-- instead of writing to the global one.
ALTER TABLE schema_versions DROP CONSTRAINT schema_versions_type_fkey;
ALTER TABLE schema_versions DROP CONSTRAINT schema_versions_pkey;
ALTER TABLE schema_types DROP CONSTRAINT schema_types_pkey;

ALTER TABLE schema_types ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE schema_versions ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE schema_types ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE schema_versions ALTER COLUMN tenant DROP DEFAULT;

ALTER TABLE schema_types ADD PRIMARY KEY (tenant, type);
ALTER TABLE schema_versions ADD PRIMARY KEY (tenant, type, version);
ALTER TABLE schema_versions ADD FOREIGN KEY (tenant, type) REFERENCES schema_types (tenant, type);
