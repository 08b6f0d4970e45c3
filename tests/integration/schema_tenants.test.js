'use strict';
// Issue 13 (sealed tenants), the schema registry: a global namespace (the shipped catalog and
// the types tenant `default` registers) that only tenant default's `schemas` keys change and
// every tenant publishes against, and one private namespace per tenant, visible to it alone
// and looked up before the global one. Another tenant's write to a global type is 403
// `forbidden`. Also: the migration turns the rows of the one shared registry into global
// types, and a second instance on the same database keeps the namespaces apart.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

// Unknown types are refused: "invisible" has to mean 422 unknown_type on publish.
const STRICT = { SLUICE_ALLOW_UNKNOWN_TYPES: '0' };
const DIALECT = 'https://json-schema.org/draft/2020-12/schema';

let s;
let dflt;  // the bootstrap admin: tenant default, every scope
let dsch;  // tenant default, a plain `schemas` key (not admin)
let B;     // tenant st-b: schemas, publish, read
let C;     // tenant st-c: schemas, publish, read
let X;     // tenant st-x: admin (which holds every scope) — still not tenant default

before(async () => {
  s = await h.startSluice({ name: 'schema-tenants', env: STRICT });
  dflt = s.client();
  const key = async (tenant, scopes) => s.client((await h.createKey(s, tenant, scopes)).token);
  dsch = await key('default', ['schemas', 'read', 'publish']);
  B = await key('st-b', ['schemas', 'publish', 'read']);
  C = await key('st-c', ['schemas', 'publish', 'read']);
  X = await key('st-x', ['admin']);
});
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

// A type name no other test uses (unique first segment, so its default stream is too).
function newType(suffix = 'thing.happened') { return `t${h.rand(4)}.${suffix}`; }
const seg = (type) => type.split('.')[0];
const enc = encodeURIComponent;

function schemaOf(props, required = Object.keys(props)) {
  return { $schema: DIALECT, type: 'object', properties: props, required };
}
const NAME_SCHEMA = () => schemaOf({ name: { type: 'string' } });
const COUNT_SCHEMA = () => schemaOf({ count: { type: 'integer' } });
function withOptional(schema, prop = 'note') {
  const x = structuredClone(schema);
  x.properties[prop] = { type: 'string' };
  return x;
}
function withRequired(schema, prop = 'extra') {
  const x = withOptional(schema, prop);
  x.required = [...x.required, prop];
  return x;
}

// A valid file.uploaded (shipped catalog, stream contextual.events).
const FILE_UPLOADED = 'file.uploaded';
const fileData = () => ({
  file_id: 'f1', user_id: 'u1', contextual_core_id: 'cc1', filename: 'a.pdf', file_size: 10,
  mime_type: 'application/pdf', is_browser_viewable: true,
});

async function register(client, body, status = 201) {
  const res = await client.post('/v1/schemas', body);
  h.assertStatus(res, status);
  assert.equal(res.body.type, body.type, res.text);
  return res.body;
}
async function getType(client, type) {
  return h.assertStatus(await client.get('/v1/schemas/' + enc(type)), 200);
}
async function listed(client) {
  const all = h.assertStatus(await client.get('/v1/schemas'), 200).schemas;
  assert.ok(Array.isArray(all), 'schemas[]');
  return all;
}
const setCompat = (client, type, compatibility) =>
  client.request('PUT', `/v1/schemas/${enc(type)}/compatibility`, { json: { compatibility } });
const deprecate = (client, type) => client.del('/v1/schemas/' + enc(type));

// Every way `client` could see or touch `type` says it does not exist (404 / unknown_type /
// absent from the list) — the same answers as for a name nobody registered.
async function assertInvisible(client, type, data) {
  const t = enc(type);
  h.assertProblem(await client.get(`/v1/schemas/${t}`), 404, 'not_found');
  h.assertProblem(await client.get(`/v1/schemas/${t}/versions`), 404, 'not_found');
  h.assertProblem(await client.get(`/v1/schemas/${t}/versions/1`), 404, 'not_found');
  h.assertProblem(await client.post(`/v1/schemas/${t}/validate`, data), 404, 'not_found');
  h.assertProblem(await setCompat(client, type, 'NONE'), 404, 'not_found');
  h.assertProblem(await deprecate(client, type), 404, 'not_found');
  h.assertProblem(await client.publish({ type, data }), 422, 'unknown_type');
  assert.ok(!(await listed(client)).some((x) => x.type === type), `${type} is not listed`);
}

// ------------------------------------------------------------------ the global namespace

describe('the global namespace', () => {
  test("tenant default's schemas key writes global types: every tenant sees them and publishes against them", async () => {
    const type = newType();
    const reg = await register(dsch, { type, schema: NAME_SCHEMA() });
    assert.equal(reg.version, 1);
    for (const client of [dflt, B, C]) {
      const t = await getType(client, type);
      assert.equal(t.namespace, 'global', JSON.stringify(t));
      assert.equal(t.latest_version, 1);
      const entry = (await listed(client)).find((x) => x.type === type);
      assert.ok(entry, `${type} listed`);
      assert.equal(entry.namespace, 'global');
    }
    // the catalog is global too
    assert.equal((await getType(B, FILE_UPLOADED)).namespace, 'global');

    const pub = h.assertStatus(await B.publish({ type, data: { name: 'x' } }), 201);
    assert.equal(pub.stream, `${seg(type)}.events`);
    h.assertProblem(await B.publish({ type, data: { name: 1 } }), 422, 'schema_violation');
    // a new global version is what B validates against
    await register(dsch, { type, schema: withOptional(NAME_SCHEMA()) });
    h.assertProblem(await B.publish({ type, data: { name: 'x', note: 5 } }), 422, 'schema_violation');
    // default deprecates: nobody publishes it any more
    h.assertStatus(await deprecate(dsch, type), 200);
    h.assertProblem(await B.publish({ type, data: { name: 'x' } }), 422, 'deprecated_type');
    h.assertProblem(await dflt.publish({ type, data: { name: 'x' } }), 422, 'deprecated_type');
  });

  test("another tenant's writes to a global type are 403 forbidden and change nothing", async () => {
    const mine = newType();
    await register(dflt, { type: mine, schema: NAME_SCHEMA() });
    const before = { [FILE_UPLOADED]: await getType(dflt, FILE_UPLOADED), [mine]: await getType(dflt, mine) };
    const catalogSchema = before[FILE_UPLOADED].schema;

    for (const client of [B, X]) { // a schemas key, and an admin key, of tenants other than default
      for (const type of [FILE_UPLOADED, mine]) {
        const schema = before[type].schema;
        const p = h.assertProblem(await deprecate(client, type), 403, 'forbidden');
        assert.match(p.detail, /global/, p.detail);
        h.assertProblem(await setCompat(client, type, 'NONE'), 403, 'forbidden');
        // a new (compatible) version, the identical schema, another stream: all refused
        h.assertProblem(await client.post('/v1/schemas', { type, schema: withOptional(schema) }), 403, 'forbidden');
        h.assertProblem(await client.post('/v1/schemas', { type, schema }), 403, 'forbidden');
        h.assertProblem(await client.post('/v1/schemas', { type, stream: 'elsewhere', schema: withOptional(schema) }), 403, 'forbidden');
        // the 403 comes before anything about the schema itself
        h.assertProblem(await client.post('/v1/schemas', { type, schema: { type: 'object', properties: { a: { $recursiveRef: '#' } } } }), 403, 'forbidden');
      }
    }

    // nothing changed: not deprecated, same compatibility, same versions, same schema
    for (const type of [FILE_UPLOADED, mine]) {
      for (const client of [dflt, B, X]) assert.deepEqual(await getType(client, type), before[type], `${type} unchanged`);
    }
    assert.deepEqual((await getType(dflt, FILE_UPLOADED)).schema, catalogSchema);
    h.assertStatus(await dflt.publish({ type: FILE_UPLOADED, data: fileData() }), 201);
    h.assertStatus(await B.publish({ type: FILE_UPLOADED, data: fileData() }), 201);
    h.assertStatus(await dflt.publish({ type: mine, data: { name: 'x' } }), 201);
    // and the write is still tenant default's to make
    h.assertStatus(await setCompat(dsch, mine, 'FULL'), 200);
    assert.equal((await getType(B, mine)).compatibility, 'FULL');
  });
});

// ------------------------------------------------------------------ private namespaces

describe('private namespaces', () => {
  test("a tenant's own type: registered by its schemas key, used for its publishes, invisible to every other tenant", async () => {
    const type = newType();
    const reg = await register(B, { type, schema: NAME_SCHEMA(), description: 'b only' });
    assert.deepEqual(reg, { type, version: 1, stream: `${seg(type)}.events` });

    const t = await getType(B, type);
    assert.equal(t.namespace, 'private');
    assert.equal(t.description, 'b only');
    assert.deepEqual(t.schema, NAME_SCHEMA());
    const mineListed = await listed(B);
    assert.equal(mineListed.filter((x) => x.type === type).length, 1);
    assert.equal(mineListed.find((x) => x.type === type).namespace, 'private');
    assert.ok(mineListed.some((x) => x.type === FILE_UPLOADED && x.namespace === 'global'), 'B still sees the catalog');
    const names = mineListed.map((x) => x.type);
    assert.deepEqual(names, [...names].sort(), 'the list stays sorted by type');
    h.assertStatus(await B.get(`/v1/schemas/${type}/versions/1`), 200);
    assert.equal(h.assertStatus(await B.post(`/v1/schemas/${type}/validate`, { name: 'x' }), 200).valid, true);

    const pub = h.assertStatus(await B.publish({ type, data: { name: 'x' } }), 201);
    assert.equal(pub.stream, `${seg(type)}.events`);
    assert.equal(h.assertStatus(await B.get('/v1/events/' + pub.id), 200).schema_version, 1);
    h.assertProblem(await B.publish({ type, data: { name: 7 } }), 422, 'schema_violation');

    // tenant default (even its admin) and any other tenant: as if it did not exist
    for (const client of [dflt, dsch, C, X]) await assertInvisible(client, type, { name: 'x' });
    // B's type is untouched by those attempts
    const after = await getType(B, type);
    assert.equal(after.deprecated, false);
    assert.equal(after.compatibility, 'BACKWARD');
  });

  test('a tenant evolves its own type: versions, compatibility and deprecation act in its namespace', async () => {
    const type = newType();
    await register(B, { type, schema: NAME_SCHEMA() });
    assert.equal((await register(B, { type, schema: NAME_SCHEMA() }, 200)).version, 1);
    assert.equal((await register(B, { type, schema: withOptional(NAME_SCHEMA()) })).version, 2);
    h.assertProblem(await B.post('/v1/schemas', { type, schema: withRequired(NAME_SCHEMA()) }), 409, 'incompatible_schema');
    h.assertProblem(await B.post('/v1/schemas', { type, stream: 'other.stream', schema: withOptional(NAME_SCHEMA(), 'x') }), 409, 'conflict');
    h.assertStatus(await setCompat(B, type, 'NONE'), 200);
    assert.equal((await register(B, { type, schema: withRequired(NAME_SCHEMA()) })).version, 3);
    h.assertProblem(await B.publish({ type, data: { name: 'x' } }), 422, 'schema_violation');
    h.assertStatus(await B.publish({ type, data: { name: 'x', extra: 'y' } }), 201);
    h.assertStatus(await B.publish({ type, schema_version: 1, data: { name: 'x' } }), 201);

    const d = h.assertStatus(await deprecate(B, type), 200);
    assert.equal(d.deprecated, true);
    assert.equal(d.namespace, 'private');
    h.assertProblem(await B.publish({ type, data: { name: 'x', extra: 'y' } }), 422, 'deprecated_type');
    // registering again revives it
    assert.equal((await register(B, { type, schema: withRequired(NAME_SCHEMA(), 'more') })).version, 4);
    h.assertStatus(await B.publish({ type, data: { name: 'x', more: 'y' } }), 201);
    // still nobody else's
    for (const client of [dflt, C]) await assertInvisible(client, type, { name: 'x' });
  });

  test('two tenants register the same type name independently', async () => {
    const type = newType();
    const rb = await register(B, { type, schema: NAME_SCHEMA() });
    const rc = await register(C, { type, stream: `${seg(type)}.c_stream`, schema: COUNT_SCHEMA() });
    assert.equal(rb.version, 1);
    assert.equal(rc.version, 1, 'C gets its own version 1, not an answer about B\'s type');
    assert.equal(rb.stream, `${seg(type)}.events`);
    assert.equal(rc.stream, `${seg(type)}.c_stream`);

    assert.deepEqual((await getType(B, type)).schema, NAME_SCHEMA());
    assert.deepEqual((await getType(C, type)).schema, COUNT_SCHEMA());
    assert.equal((await getType(C, type)).stream, `${seg(type)}.c_stream`);

    // each tenant's events are validated by its own schema and go to its own stream
    assert.equal(h.assertStatus(await B.publish({ type, data: { name: 'x' } }), 201).stream, `${seg(type)}.events`);
    h.assertProblem(await B.publish({ type, data: { count: 1 } }), 422, 'schema_violation');
    assert.equal(h.assertStatus(await C.publish({ type, data: { count: 1 } }), 201).stream, `${seg(type)}.c_stream`);
    h.assertProblem(await C.publish({ type, data: { name: 'x' } }), 422, 'schema_violation');

    // B's changes leave C's type alone: versions, compatibility, deprecation
    assert.equal((await register(B, { type, schema: withOptional(NAME_SCHEMA()) })).version, 2);
    h.assertStatus(await setCompat(B, type, 'NONE'), 200);
    h.assertStatus(await deprecate(B, type), 200);
    const ct = await getType(C, type);
    assert.equal(ct.latest_version, 1);
    assert.deepEqual(ct.versions, [1]);
    assert.equal(ct.compatibility, 'BACKWARD');
    assert.equal(ct.deprecated, false);
    h.assertStatus(await C.publish({ type, data: { count: 2 } }), 201);
    h.assertProblem(await B.publish({ type, data: { name: 'x' } }), 422, 'deprecated_type');
    // compatibility is checked against C's own versions (BACKWARD still holds for C)
    h.assertProblem(await C.post('/v1/schemas', { type, schema: withRequired(COUNT_SCHEMA()) }), 409, 'incompatible_schema');
    assert.equal((await register(C, { type, schema: withOptional(COUNT_SCHEMA()) })).version, 2);
    assert.equal((await getType(B, type)).latest_version, 2);
    assert.deepEqual((await getType(B, type)).schema, withOptional(NAME_SCHEMA()));

    // and tenant default has neither
    await assertInvisible(dflt, type, { name: 'x' });
  });

  test('a tenant cannot take a global name; its private type keeps its meaning when the name later becomes global', async () => {
    const type = newType();
    await register(B, { type, schema: NAME_SCHEMA() });
    // tenant default registers the same name globally: nothing tells it about B's type
    const g = await register(dflt, { type, schema: COUNT_SCHEMA() });
    assert.equal(g.version, 1);
    assert.equal((await getType(dflt, type)).namespace, 'global');
    assert.deepEqual((await getType(dflt, type)).schema, COUNT_SCHEMA());

    // B still sees and uses its own (listed once, as private)
    const bt = await getType(B, type);
    assert.equal(bt.namespace, 'private');
    assert.deepEqual(bt.schema, NAME_SCHEMA());
    const bl = (await listed(B)).filter((x) => x.type === type);
    assert.equal(bl.length, 1, JSON.stringify(bl));
    assert.equal(bl[0].namespace, 'private');
    h.assertStatus(await B.publish({ type, data: { name: 'x' } }), 201);
    h.assertProblem(await B.publish({ type, data: { count: 1 } }), 422, 'schema_violation');
    // B's writes go to its own type; the global one does not move
    assert.equal((await register(B, { type, schema: withOptional(NAME_SCHEMA()) })).version, 2);
    h.assertStatus(await deprecate(B, type), 200);
    const gt = await getType(dflt, type);
    assert.equal(gt.latest_version, 1);
    assert.equal(gt.deprecated, false);
    h.assertStatus(await dflt.publish({ type, data: { count: 1 } }), 201);

    // C, which has no type of that name, gets the global one and may not write it
    const ct = await getType(C, type);
    assert.equal(ct.namespace, 'global');
    h.assertStatus(await C.publish({ type, data: { count: 1 } }), 201);
    h.assertProblem(await C.post('/v1/schemas', { type, schema: NAME_SCHEMA() }), 403, 'forbidden');
    h.assertProblem(await deprecate(C, type), 403, 'forbidden');
  });
});

// ------------------------------------------------------------------ the migration

describe('upgrading a database whose registry was shared', () => {
  let db;
  let u;
  const legacy = `legacy${h.rand(3)}.thing.done`;
  before(async () => {
    db = await h.freshDatabase();
    // the database as the previous release left it: migrations 001–008, one registered type
    const dir = path.join(h.REPO, 'migrations');
    const files = fs.readdirSync(dir).filter((f) => /^\d+_.*\.sql$/.test(f)).sort()
      .filter((f) => parseInt(f, 10) <= 8);
    assert.equal(files.length, 8, files.join(' '));
    h.psql(db.url, 'CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    for (const f of files) {
      h.psql(db.url, fs.readFileSync(path.join(dir, f), 'utf8'));
      h.psql(db.url, `INSERT INTO schema_migrations (version, name) VALUES (${parseInt(f, 10)}, '${f.replace(/\.sql$/, '')}')`);
    }
    const schema = JSON.stringify(NAME_SCHEMA()).replace(/'/g, "''");
    h.psql(db.url, `INSERT INTO schema_types (type, stream, compatibility) VALUES ('${legacy}', 'legacy.events', 'FULL');
      INSERT INTO schema_versions (type, version, schema, fingerprint) VALUES ('${legacy}', 1, '${schema}'::jsonb, 'x')`);
    u = await h.startSluice({ name: 'schema-tenants-upgrade', dbUrl: db.url, env: STRICT });
  });
  after(async () => {
    try {
      if (u) await u.stop().finally(() => u.cleanup());
    } finally {
      if (db) db.drop();
    }
  });

  test('the existing types become global: every tenant publishes against them, only tenant default changes them', async () => {
    assert.equal(h.psql(db.url, `SELECT tenant FROM schema_types WHERE type = '${legacy}'`), 'default');
    const a = u.client();
    const b = u.client((await h.createKey(u, 'st-up', ['schemas', 'publish', 'read'])).token);
    for (const client of [a, b]) {
      const t = await getType(client, legacy);
      assert.equal(t.namespace, 'global');
      assert.equal(t.compatibility, 'FULL');
      assert.equal(t.stream, 'legacy.events');
      assert.equal(h.assertStatus(await client.publish({ type: legacy, data: { name: 'x' } }), 201).stream, 'legacy.events');
    }
    h.assertProblem(await deprecate(b, legacy), 403, 'forbidden');
    h.assertProblem(await b.post('/v1/schemas', { type: legacy, schema: NAME_SCHEMA() }), 403, 'forbidden');
    // the catalog was registered on top, globally, and a private type still works here
    assert.equal((await getType(b, FILE_UPLOADED)).namespace, 'global');
    const own = newType();
    await register(b, { type: own, schema: NAME_SCHEMA() });
    await assertInvisible(a, own, { name: 'x' });
    h.assertStatus(await deprecate(a, legacy), 200);
    h.assertProblem(await b.publish({ type: legacy, data: { name: 'x' } }), 422, 'deprecated_type');
  });
});

// ------------------------------------------------------------------ two instances

describe('two instances on one database', () => {
  let db;
  let A;
  let Bi;
  before(async () => {
    db = await h.freshDatabase();
    A = await h.startSluice({ name: 'schema-tenants-a', dbUrl: db.url, env: STRICT });
    Bi = await h.startSluice({ name: 'schema-tenants-b', dbUrl: db.url, env: STRICT, adminToken: A.adminToken });
  });
  after(async () => {
    try {
      if (Bi) await Bi.stop().finally(() => Bi.cleanup());
      if (A) await A.stop().finally(() => A.cleanup());
    } finally {
      if (db) db.drop();
    }
  });

  test("a private type registered on one instance reaches its tenant on the other, and no one else's view", async () => {
    const token = (await h.createKey(A, 'st-multi', ['schemas', 'publish', 'read'])).token;
    const pa = A.client(token);
    const pb = Bi.client(token);
    await h.waitFor(async () => (await pb.get('/v1/schemas')).status === 200,
      { timeout: 15000, interval: 100, what: 'the key to reach instance B' });
    const type = newType();
    await register(pa, { type, schema: NAME_SCHEMA() });
    await h.waitFor(async () => (await pb.publish({ type, data: { name: 'x' } })).status === 201,
      { timeout: 15000, interval: 100, what: 'instance B to accept the private type registered on A' });
    assert.equal((await getType(pb, type)).namespace, 'private');
    h.assertProblem(await pb.publish({ type, data: { name: 1 } }), 422, 'schema_violation');
    await assertInvisible(Bi.client(), type, { name: 'x' });

    // the same name registered globally on B does not replace the tenant's type on A
    await register(Bi.client(), { type, schema: COUNT_SCHEMA() });
    await h.waitFor(async () => (await A.client().publish({ type, data: { count: 1 } })).status === 201,
      { timeout: 15000, interval: 100, what: 'instance A to accept the global type registered on B' });
    assert.deepEqual((await getType(pa, type)).schema, NAME_SCHEMA());
    h.assertStatus(await pa.publish({ type, data: { name: 'x' } }), 201);

    // the tenant deprecates its own on B: A refuses its publishes, not tenant default's
    h.assertStatus(await deprecate(pb, type), 200);
    await h.waitFor(async () => (await pa.publish({ type, data: { name: 'x' } })).status === 422,
      { timeout: 15000, interval: 100, what: 'instance A to see the deprecation made on B' });
    h.assertProblem(await pa.publish({ type, data: { name: 'x' } }), 422, 'deprecated_type');
    h.assertStatus(await A.client().publish({ type, data: { count: 2 } }), 201);
    assert.equal((await getType(A.client(), type)).deprecated, false);
  });
});
