'use strict';
// Issue 3: the shipped event-type catalog (schemas/<type>.json). Every type is registered at
// start-up with its stream and schema; its example (schemas/examples/<type>.json) publishes;
// deliberately broken variants (a required property dropped, a property of the wrong type)
// are refused with the right paths; a restart does not overwrite what the registry holds.
// Issue 15: a database whose catalog types were registered from the earlier catalog (integer
// counts, formats the seeds never stated) starts, keeps what it holds, and takes the shipped
// files as BACKWARD-compatible new versions.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const DIR = path.join(h.REPO, 'schemas');
const CATALOG = fs.readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => {
    const body = JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8'));
    const ex = path.join(DIR, 'examples', f);
    return { file: f, body, example: fs.existsSync(ex) ? JSON.parse(fs.readFileSync(ex, 'utf8')) : null };
  })
  .sort((a, b) => (a.body.type < b.body.type ? -1 : a.body.type > b.body.type ? 1 : 0));

const ENV = { SLUICE_ALLOW_UNKNOWN_TYPES: '0' };
let db;
let s;
let c;
before(async () => {
  db = await h.freshDatabase();
  s = await h.startSluice({ name: 'catalog', dbUrl: db.url, env: ENV });
  c = s.client();
});
after(async () => {
  try {
    if (s) await s.stop().finally(() => s.cleanup());
  } finally {
    if (db) db.drop();
  }
});

// JSON types a value has ('integer' values are numbers too).
function jsonTypes(v) {
  if (v === null) return ['null'];
  if (Array.isArray(v)) return ['array'];
  if (typeof v === 'number') return Number.isInteger(v) ? ['integer', 'number'] : ['number'];
  return [typeof v];
}
// A value none of whose JSON types the property's `type` allows.
function wrongValue(type) {
  const allowed = Array.isArray(type) ? type : [type];
  return ['wrong', 12345, true, null, [1], { x: 1 }].find((v) => !jsonTypes(v).some((t) => allowed.includes(t)));
}

test('the catalog directory is not empty and file names are the types', () => {
  assert.ok(CATALOG.length >= 40, `dozens of types: ${CATALOG.length}`);
  for (const { file, body } of CATALOG) assert.equal(file, body.type + '.json');
});

test('GET /v1/schemas on a fresh database lists exactly the catalog, version 1 of each', async () => {
  const list = h.assertStatus(await c.get('/v1/schemas'), 200);
  const types = list.schemas.map((x) => x.type);
  assert.deepEqual(types, CATALOG.map((x) => x.body.type), 'the catalog types, sorted');
  for (const { body } of CATALOG) {
    const t = list.schemas.find((x) => x.type === body.type);
    assert.equal(t.stream, body.stream, body.type);
    assert.equal(t.latest_version, 1, body.type);
    assert.deepEqual(t.versions, [1], body.type);
    assert.equal(t.compatibility, 'BACKWARD', body.type);
    assert.equal(t.deprecated, false, body.type);
  }
});

test('every example published in one atomic batch → 201, each on its type\'s stream', async () => {
  const withEx = CATALOG.filter((x) => x.example);
  if (!withEx.length) return;
  const res = await c.publish(withEx.map(({ body, example }) => ({ type: body.type, data: example })));
  h.assertStatus(res, 201);
  assert.equal(res.body.events.length, withEx.length);
  res.body.events.forEach((e, i) => assert.equal(e.stream, withEx[i].body.stream, withEx[i].body.type));
});

describe('each catalog type', () => {
  for (const { body, example } of CATALOG) {
    const type = body.type;
    describe(type, () => {
      test('registered with its stream, description and schema; re-registering the file → 200 version 1', async () => {
        const t = h.assertStatus(await c.get('/v1/schemas/' + type), 200);
        assert.equal(t.type, type);
        assert.equal(t.stream, body.stream);
        assert.equal(t.description, body.description);
        assert.deepEqual(t.schema, body.schema);
        assert.equal(t.latest_version, 1);
        const again = await c.post('/v1/schemas', body);
        h.assertStatus(again, 200);
        assert.equal(again.body.version, 1);
        assert.equal(again.body.stream, body.stream);
      });

      if (!example) {
        test('example', { skip: `no schemas/examples/${type}.json yet` }, () => {});
        return;
      }

      test('its example validates and publishes (201, stored with schema_version 1)', async () => {
        const v = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, example), 200);
        assert.equal(v.valid, true, JSON.stringify(v));
        assert.deepEqual(v.errors, []);
        const res = await c.publish({ type, data: example });
        h.assertStatus(res, 201);
        assert.equal(res.body.stream, body.stream);
        const ev = h.assertStatus(await c.get('/v1/events/' + res.body.id), 200);
        assert.deepEqual(ev.data, example);
        assert.equal(ev.schema_version, 1);
      });

      const required = (body.schema.required || []).filter((p) => p in example);
      if (required.length) {
        test(`dropping a required property (${required.join(', ')}) → 422 naming it`, async () => {
          for (const prop of required) {
            const data = { ...example };
            delete data[prop];
            const res = await c.publish({ type, data });
            const p = h.assertProblem(res, 422, 'schema_violation');
            assert.equal(p.errors.length, 1, `one violation: ${res.text}`);
            const e = p.errors[0];
            assert.equal(e.index, 0);
            assert.equal(e.keyword, 'required', res.text);
            assert.ok(e.path === `/data/${prop}` || (e.path === '/data' && e.message.includes(prop)), `names ${prop}: ${res.text}`);
            assert.ok(e.message.length > 0);
          }
        });
      }

      const typed = Object.entries(body.schema.properties || {})
        .filter(([p, sch]) => p in example && sch && (typeof sch.type === 'string' || Array.isArray(sch.type)));
      if (typed.length) {
        test(`a property of the wrong type → 422 at /data/<property> (${typed.length} properties)`, async () => {
          for (const [prop, sch] of typed) {
            const bad = wrongValue(sch.type);
            const data = { ...example, [prop]: bad };
            const res = await c.publish({ type, data });
            const p = h.assertProblem(res, 422, 'schema_violation');
            const ptr = '/data/' + prop.replace(/~/g, '~0').replace(/\//g, '~1');
            assert.ok(p.errors.some((e) => e.path === ptr && e.keyword === 'type'), `type error at ${ptr} for ${JSON.stringify(bad)}: ${res.text}`);
            assert.ok(p.errors.every((e) => e.path === ptr && e.index === 0), `only ${ptr}: ${res.text}`);
            // the validate endpoint agrees, with paths relative to data
            const v = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, data), 200);
            assert.equal(v.valid, false);
            assert.ok(v.errors.some((e) => e.path === ptr.slice('/data'.length) && e.keyword === 'type'), JSON.stringify(v));
          }
        });
      }
    });
  }
});

describe('restart', () => {
  test('start-up registers only absent types: a newer version and a deprecation survive a restart', async () => {
    const withEx = CATALOG.filter((x) => x.example && x.body.schema.properties);
    assert.ok(withEx.length >= 2, 'two catalog types with examples');
    const evolved = withEx[0];
    const deprecated = withEx[1];
    const v2 = structuredClone(evolved.body.schema);
    v2.properties.sluice_test_note = { type: 'string' };
    const r = await c.post('/v1/schemas', { ...evolved.body, schema: v2 });
    h.assertStatus(r, 201);
    assert.equal(r.body.version, 2);
    h.assertStatus(await c.del('/v1/schemas/' + deprecated.body.type), 200);

    await s.stop();
    s = await h.startSluice({ name: 'catalog-restart', dbUrl: db.url, env: ENV });
    c = s.client();

    const t = h.assertStatus(await c.get('/v1/schemas/' + evolved.body.type), 200);
    assert.equal(t.latest_version, 2);
    assert.deepEqual(t.schema, v2);
    const d = h.assertStatus(await c.get('/v1/schemas/' + deprecated.body.type), 200);
    assert.equal(d.deprecated, true);
    assert.equal(d.latest_version, 1);
    h.assertProblem(await c.publish({ type: deprecated.body.type, data: deprecated.example }), 422, 'deprecated_type');
    h.assertStatus(await c.publish({ type: evolved.body.type, data: { ...evolved.example, sluice_test_note: 'x' } }), 201);

    const list = h.assertStatus(await c.get('/v1/schemas'), 200);
    assert.equal(list.schemas.length, CATALOG.length, 'no type added or lost');
    for (const x of list.schemas) {
      if (x.type !== evolved.body.type) assert.equal(x.latest_version, 1, x.type);
    }
  });
});

describe('a database registered from the earlier catalog', () => {
  // What the catalog shipped before issue 15 for four types, as overrides of the shipped
  // properties: seed `number`s as integers ≥ 0, and formats no seed states.
  const int0 = { type: 'integer', minimum: 0 };
  const EARLIER = {
    'file.processing.completed': { processing_time_ms: int0, extracted_text_length: int0 },
    'website.crawl.started': {
      crawlId: { type: 'string', format: 'uuid' }, targetUrl: { type: 'string', format: 'uri' },
      maxDepth: int0, maxPages: int0,
    },
    'user.login': { ip_address: { type: 'string', anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }] } },
    'auth.user.registered': { email: { type: 'string', format: 'email' } },
  };
  // Data the shipped schema accepts and the earlier one refused (at the given property).
  const NEW_ONLY = {
    'file.processing.completed': ['processing_time_ms', 3870.25],
    'website.crawl.started': ['crawlId', 'crawl-2024-06-01-docs'],
    'user.login': ['ip_address', 'unknown (behind proxy)'],
    'auth.user.registered': ['email', 'learner at example dot com'],
  };
  const shipped = (type) => CATALOG.find((x) => x.body.type === type);
  const earlierSchema = (type) => {
    const sch = structuredClone(shipped(type).body.schema);
    for (const [k, v] of Object.entries(EARLIER[type])) sch.properties[k] = v;
    return sch;
  };
  // The registry's fingerprint: SHA-256 of the schema's compact JSON with sorted keys.
  const sorted = (v) => (Array.isArray(v) ? v.map(sorted) : v && typeof v === 'object'
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])])) : v);
  const fingerprint = (sch) => crypto.createHash('sha256').update(JSON.stringify(sorted(sch))).digest('hex');

  let odb;
  let os;
  before(async () => {
    odb = await h.freshDatabase();
    // a first start creates the tables and registers the catalog …
    const first = await h.startSluice({ name: 'catalog-earlier-1', dbUrl: odb.url, env: ENV });
    await first.stop().finally(() => first.cleanup());
    // … whose version 1 of these types then holds the earlier schema, as an older sluice left it
    for (const type of Object.keys(EARLIER)) {
      const sch = JSON.stringify(earlierSchema(type));
      assert.ok(!sch.includes('$j$'));
      const n = h.psql(odb.url, `UPDATE schema_versions SET schema = $j$${sch}$j$::jsonb, fingerprint = '${fingerprint(earlierSchema(type))}' `
        + `WHERE tenant = 'default' AND type = '${type}' AND version = 1 RETURNING 1`);
      assert.equal(n, '1', type);
    }
    os = await h.startSluice({ name: 'catalog-earlier-2', dbUrl: odb.url, env: ENV });
  });
  after(async () => {
    try {
      if (os) await os.stop().finally(() => os.cleanup());
    } finally {
      if (odb) odb.drop();
    }
  });

  test('start-up succeeds and keeps the stored versions (the catalog registers only absent types)', async () => {
    const c2 = os.client();
    const list = h.assertStatus(await c2.get('/v1/schemas'), 200);
    assert.deepEqual(list.schemas.map((x) => x.type), CATALOG.map((x) => x.body.type));
    assert.ok(list.schemas.every((x) => x.latest_version === 1));
    for (const type of Object.keys(EARLIER)) {
      const t = h.assertStatus(await c2.get('/v1/schemas/' + type), 200);
      assert.deepEqual(t.schema, earlierSchema(type), type);
      const [prop, value] = NEW_ONLY[type];
      const p = h.assertProblem(await c2.publish({ type, data: { ...shipped(type).example, [prop]: value } }), 422, 'schema_violation');
      assert.ok(p.errors.every((e) => e.path === '/data/' + prop), `${type}: ${JSON.stringify(p)}`);
    }
  });

  test('every shipped file registers over it: a changed type → 201 version 2 (BACKWARD), the rest 200', async () => {
    const c2 = os.client();
    for (const { body } of CATALOG) {
      const res = await c2.post('/v1/schemas', body);
      if (body.type in EARLIER) {
        h.assertStatus(res, 201);
        assert.equal(res.body.version, 2, body.type);
      } else {
        h.assertStatus(res, 200);
        assert.equal(res.body.version, 1, body.type);
      }
    }
    for (const type of Object.keys(EARLIER)) {
      const [prop, value] = NEW_ONLY[type];
      const res = await c2.publish({ type, data: { ...shipped(type).example, [prop]: value } });
      h.assertStatus(res, 201);
      const ev = h.assertStatus(await c2.get('/v1/events/' + res.body.id), 200);
      assert.equal(ev.schema_version, 2, type);
    }
  });
});
