'use strict';
// Issue 3: the schema registry over HTTP — registration, versions, compatibility modes, the
// validate endpoint, deprecation, scopes — and validation on POST /v1/events (every violation
// listed with its path and batch index, unknown types, schema_version pinning, the type's
// stream), a second instance seeing registry changes, and publishing while a version is added.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

// Schema validation is the point here: unknown types are refused.
const STRICT = { SLUICE_ALLOW_UNKNOWN_TYPES: '0' };

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'schemas', env: STRICT }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

// A type no other test uses; its first segment is unique too, so its default stream is.
function newType(suffix = 'thing.happened') { return `x${h.rand(4)}.${suffix}`; }
const seg = (type) => type.split('.')[0];

const DIALECT = 'https://json-schema.org/draft/2020-12/schema';
// An open object (no additionalProperties): adding an optional property is BACKWARD-compatible.
function baseSchema() {
  return {
    $schema: DIALECT,
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1 },
      size: { type: 'integer', minimum: 0 },
      tags: { type: 'array', items: { type: 'string' } },
    },
    required: ['name', 'size'],
  };
}
function withOptionalColor(schema = baseSchema()) {
  const x = structuredClone(schema);
  x.properties.color = { type: 'string' };
  return x;
}
function withRequiredColor(schema = baseSchema()) {
  const x = withOptionalColor(schema);
  x.required = [...x.required, 'color'];
  return x;
}
const goodData = (extra = {}) => ({ name: 'report.pdf', size: 10, tags: ['a'], ...extra });

async function register(body, status = 201, client = c) {
  const res = await client.post('/v1/schemas', body);
  h.assertStatus(res, status);
  assert.equal(res.body.type, body.type, `answer names the type: ${res.text}`);
  assert.ok(Number.isInteger(res.body.version) && res.body.version >= 1, `answer has version: ${res.text}`);
  assert.equal(typeof res.body.stream, 'string', `answer has stream: ${res.text}`);
  return res.body;
}

async function getType(type, client = c) {
  return h.assertStatus(await client.get('/v1/schemas/' + encodeURIComponent(type)), 200);
}

async function setCompat(type, compatibility) {
  const res = await c.request('PUT', `/v1/schemas/${type}/compatibility`, { json: { compatibility } });
  h.assertStatus(res, 200);
  assert.equal(res.body.type, type, res.text);
  assert.equal(res.body.compatibility, compatibility, res.text);
}

async function headPosition(client = c) {
  const res = h.assertStatus(await client.get('/v1/info'), 200);
  assert.ok(Number.isInteger(res.head_position), `head_position: ${JSON.stringify(res)}`);
  return res.head_position;
}

function assertSummary(t, { type, stream, latest, versions, compatibility = 'BACKWARD', deprecated = false }) {
  const txt = JSON.stringify(t);
  assert.equal(t.type, type, txt);
  assert.equal(t.stream, stream, txt);
  assert.ok('description' in t, `description field: ${txt}`);
  assert.equal(t.compatibility, compatibility, txt);
  assert.equal(t.deprecated, deprecated, txt);
  assert.equal(t.latest_version, latest, txt);
  assert.deepEqual(t.versions, versions, txt);
}

// The 422 schema_violation errors as sorted "index path keyword" strings.
function violations(p) {
  assert.ok(Array.isArray(p.errors) && p.errors.length > 0, `errors[]: ${JSON.stringify(p)}`);
  for (const e of p.errors) {
    assert.ok(Number.isInteger(e.index), `index in ${JSON.stringify(e)}`);
    assert.equal(typeof e.path, 'string', `path in ${JSON.stringify(e)}`);
    assert.equal(typeof e.keyword, 'string', `keyword in ${JSON.stringify(e)}`);
    assert.ok(typeof e.message === 'string' && e.message.length > 0, `message in ${JSON.stringify(e)}`);
  }
  return p.errors.map((e) => `${e.index} ${e.path} ${e.keyword}`).sort();
}

// A missing required property may be reported at the object (keyword required, message names
// it) or at the property's own pointer.
function reportsMissing(errors, objectPath, prop, index = 0) {
  return errors.some((e) => e.index === index && e.keyword === 'required' &&
    (e.path === `${objectPath}/${prop}` || (e.path === objectPath && e.message.includes(prop))));
}

// ------------------------------------------------------------------ registration

describe('registering a type', () => {
  test('201 {type, version 1, stream}; stream defaults to <first segment>.events; GET shows it', async () => {
    const type = newType();
    const schema = baseSchema();
    const b = await register({ type, schema });
    assert.equal(b.version, 1);
    assert.equal(b.stream, `${seg(type)}.events`);
    const t = await getType(type);
    assertSummary(t, { type, stream: `${seg(type)}.events`, latest: 1, versions: [1] });
    assert.deepEqual(t.schema, schema, 'GET returns the latest schema as registered');
  });

  test('explicit stream and description are kept', async () => {
    const type = newType();
    const stream = `${seg(type)}.custom_stream`;
    const b = await register({ type, stream, description: 'Something happened to a thing.', schema: baseSchema() });
    assert.equal(b.stream, stream);
    const t = await getType(type);
    assert.equal(t.stream, stream);
    assert.equal(t.description, 'Something happened to a thing.');
  });

  test('identical schema to the latest → 200 with the latest version; no new version (key order does not matter)', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    const again = await register({ type, schema: baseSchema() }, 200);
    assert.equal(again.version, 1);
    assert.equal(again.stream, `${seg(type)}.events`);
    // same schema, keys in another order
    const s0 = baseSchema();
    const reordered = { required: s0.required, properties: { tags: s0.properties.tags, size: { minimum: 0, type: 'integer' }, name: s0.properties.name }, type: 'object', $schema: DIALECT };
    assert.equal((await register({ type, schema: reordered }, 200)).version, 1);
    // identical to the latest (v2), not to v1
    assert.equal((await register({ type, schema: withOptionalColor() }, 201)).version, 2);
    assert.equal((await register({ type, schema: withOptionalColor() }, 200)).version, 2);
    const t = await getType(type);
    assert.equal(t.latest_version, 2);
    assert.deepEqual(t.versions, [1, 2]);
  });

  test('versions and single versions are readable with created_at', async () => {
    const type = newType();
    const v1 = baseSchema();
    const v2 = withOptionalColor();
    await register({ type, schema: v1 });
    const r2 = await register({ type, schema: v2 });
    assert.equal(r2.version, 2);

    const vs = h.assertStatus(await c.get(`/v1/schemas/${type}/versions`), 200);
    assert.equal(vs.type, type);
    assert.deepEqual(vs.versions.map((v) => v.version), [1, 2], JSON.stringify(vs));
    for (const v of vs.versions) assert.match(v.created_at, h.TIME_RE, JSON.stringify(v));
    assert.ok(Date.parse(vs.versions[0].created_at) <= Date.parse(vs.versions[1].created_at));

    for (const [n, schema] of [[1, v1], [2, v2]]) {
      const one = h.assertStatus(await c.get(`/v1/schemas/${type}/versions/${n}`), 200);
      assert.equal(one.type, type);
      assert.equal(one.version, n);
      assert.equal(one.stream, `${seg(type)}.events`);
      assert.deepEqual(one.schema, schema, `version ${n} is the schema registered as ${n}`);
      assert.match(one.created_at, h.TIME_RE);
    }
    assert.deepEqual((await getType(type)).schema, v2, 'GET /v1/schemas/{type} shows the latest');
  });

  test('unknown type or version → 404 not_found', async () => {
    const type = newType();
    h.assertProblem(await c.get(`/v1/schemas/${type}`), 404, 'not_found');
    h.assertProblem(await c.get(`/v1/schemas/${type}/versions`), 404, 'not_found');
    h.assertProblem(await c.get(`/v1/schemas/${type}/versions/1`), 404, 'not_found');
    h.assertProblem(await c.del(`/v1/schemas/${type}`), 404, 'not_found');
    h.assertProblem(await c.post(`/v1/schemas/${type}/validate`, {}), 404, 'not_found');
    await register({ type, schema: baseSchema() });
    h.assertProblem(await c.get(`/v1/schemas/${type}/versions/2`), 404, 'not_found');
    h.assertProblem(await c.get(`/v1/schemas/${type}/versions/99`), 404, 'not_found');
  });

  test('a different stream for an existing type → 409 conflict; nothing changes', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    h.assertProblem(await c.post('/v1/schemas', { type, stream: 'elsewhere.events', schema: withOptionalColor() }), 409, 'conflict');
    const t = await getType(type);
    assert.equal(t.stream, `${seg(type)}.events`);
    assert.equal(t.latest_version, 1);
  });

  test('a bad request body → 400 invalid_request', async () => {
    const type = newType();
    const bodies = [
      { type, schema: baseSchema(), bogus: 1 },              // unknown field
      { schema: baseSchema() },                              // no type
      { type },                                              // no schema
      { type: 'Not.A.Type', schema: baseSchema() },          // type pattern
      { type: 'single', schema: baseSchema() },
      { type: 42, schema: baseSchema() },
      { type, stream: 7, schema: baseSchema() },
      { type, description: 5, schema: baseSchema() },
    ];
    for (const body of bodies) {
      h.assertProblem(await c.post('/v1/schemas', body), 400, 'invalid_request');
    }
    for (const raw of ['[]', '"x"', '42']) {
      h.assertProblem(await c.request('POST', '/v1/schemas', { body: raw, headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_request');
    }
    h.assertProblem(await c.get(`/v1/schemas/${type}`), 404, 'not_found');
  });

  test('invalid JSON body → 400 invalid_json', async () => {
    const res = await c.request('POST', '/v1/schemas', { body: '{"type": "a.b", "schema": {', headers: { 'Content-Type': 'application/json' } });
    h.assertProblem(res, 400, 'invalid_json');
  });
});

describe('keywords Sluice does not implement, and invalid schemas', () => {
  const unsupported = [
    // Sluice implements $dynamicRef; $recursiveRef is draft 2019-09's keyword, not 2020-12's.
    ['$recursiveRef (draft 2019-09)', { type: 'object', properties: { a: { $recursiveRef: '#' } } }, '/properties/a/$recursiveRef'],
    ['a misspelt keyword', { type: 'object', properties: { a: { type: 'integer', minimun: 0 } } }, '/properties/a/minimun'],
    ['made-up keyword', { type: 'object', properties: { a: { type: 'string', frobnicate: 1 } } }, '/properties/a/frobnicate'],
    ['made-up keyword at the root', { type: 'object', frobnicate: true }, '/frobnicate'],
    ['made-up keyword inside $defs', { type: 'object', $defs: { d: { type: 'string', wibble: 'x' } }, properties: { a: { $ref: '#/$defs/d' } } }, '/$defs/d/wibble'],
  ];
  for (const [what, schema, pointer] of unsupported) {
    test(`${what} → 422 unsupported_keyword naming ${pointer}; nothing registered`, async () => {
      const type = newType();
      const p = h.assertProblem(await c.post('/v1/schemas', { type, schema: { $schema: DIALECT, ...schema } }), 422, 'unsupported_keyword');
      assert.ok(Array.isArray(p.errors) && p.errors.length >= 1, JSON.stringify(p));
      // The pointer may be into the schema or into the request body (/schema/...).
      assert.ok(p.errors.some((e) => typeof e.path === 'string' && (e.path === pointer || e.path === '/schema' + pointer)),
        `an error at ${pointer}: ${JSON.stringify(p)}`);
      h.assertProblem(await c.get(`/v1/schemas/${type}`), 404, 'not_found');
    });
  }

  test('two unsupported keywords are both reported', async () => {
    const type = newType();
    const p = h.assertProblem(await c.post('/v1/schemas', { type, schema: { type: 'object', frobnicate: 1, properties: { a: { $recursiveRef: '#' } } } }), 422, 'unsupported_keyword');
    const paths = p.errors.map((e) => e.path.replace(/^\/schema/, ''));
    assert.ok(paths.includes('/frobnicate') && paths.includes('/properties/a/$recursiveRef'), JSON.stringify(p));
  });

  test('a reference to a remote document is refused with 422, never ignored', async () => {
    const type = newType();
    const res = await c.post('/v1/schemas', { type, schema: { type: 'object', properties: { a: { $ref: 'https://example.com/schemas/a.json' } } } });
    assert.equal(res.status, 422, h.describeRes(res));
    assert.ok(['unsupported_keyword', 'invalid_schema'].includes(res.body && res.body.code), h.describeRes(res));
    assert.ok(res.body.errors.some((e) => e.path.replace(/^\/schema/, '') === '/properties/a/$ref'), h.describeRes(res));
    h.assertProblem(await c.get(`/v1/schemas/${type}`), 404, 'not_found');
  });

  test('$dynamicRef is implemented: a bookended $dynamicRef registers and validates', async () => {
    const type = newType();
    const schema = {
      $schema: DIALECT,
      $dynamicAnchor: 'node',
      type: 'object',
      properties: { value: { type: 'integer' }, children: { type: 'array', items: { $dynamicRef: '#node' } } },
    };
    await register({ type, schema });
    const ok = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, { value: 1, children: [{ value: 2, children: [{ value: 3 }] }] }), 200);
    assert.equal(ok.valid, true, JSON.stringify(ok));
    const bad = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, { value: 1, children: [{ value: 2, children: [{ value: 'x' }] }] }), 200);
    assert.equal(bad.valid, false);
    assert.deepEqual(bad.errors.map((e) => `${e.path} ${e.keyword}`), ['/children/0/children/0/value type'], JSON.stringify(bad));
  });

  const invalid = [
    ['type is a number', { type: 5 }],
    ['type is not a JSON type name', { type: 'strin' }],
    ['required is not an array', { type: 'object', required: 'a' }],
    ['minLength is negative', { type: 'string', minLength: -1 }],
    ['properties is not an object', { type: 'object', properties: 3 }],
    ['pattern does not compile', { type: 'string', pattern: '(' }],
    ['$ref does not resolve', { type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }],
  ];
  for (const [what, schema] of invalid) {
    test(`${what} → 422 invalid_schema; nothing registered`, async () => {
      const type = newType();
      h.assertProblem(await c.post('/v1/schemas', { type, schema }), 422, 'invalid_schema');
      h.assertProblem(await c.get(`/v1/schemas/${type}`), 404, 'not_found');
    });
  }

  test('a refused new version leaves the existing type unchanged', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    h.assertProblem(await c.post('/v1/schemas', { type, schema: { ...withOptionalColor(), frobnicate: 1 } }), 422, 'unsupported_keyword');
    h.assertProblem(await c.post('/v1/schemas', { type, schema: { ...withOptionalColor(), type: 5 } }), 422, 'invalid_schema');
    const t = await getType(type);
    assert.equal(t.latest_version, 1);
    assert.deepEqual(t.schema, baseSchema());
  });
});

// ------------------------------------------------------------------ compatibility

describe('compatibility', () => {
  test('default BACKWARD: adding an optional property to an open object → 201 version 2', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    assert.equal((await getType(type)).compatibility, 'BACKWARD');
    const b = await register({ type, schema: withOptionalColor() });
    assert.equal(b.version, 2);
  });

  test('BACKWARD: adding a required property → 409 incompatible_schema with reasons; nothing stored', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    const p = h.assertProblem(await c.post('/v1/schemas', { type, schema: withRequiredColor() }), 409, 'incompatible_schema');
    assert.equal(p.compatibility, 'BACKWARD', JSON.stringify(p));
    assert.ok(Array.isArray(p.errors) && p.errors.length >= 1, JSON.stringify(p));
    for (const e of p.errors) {
      assert.equal(typeof e.path, 'string', JSON.stringify(e));
      assert.ok(typeof e.message === 'string' && e.message.length > 0, JSON.stringify(e));
      assert.ok(typeof e.direction === 'string' && e.direction.length > 0, JSON.stringify(e));
      assert.equal(e.version, 1, `checked against version 1: ${JSON.stringify(e)}`);
    }
    assert.ok(p.errors.some((e) => (e.path + ' ' + e.message).includes('color')), `a reason names color: ${JSON.stringify(p)}`);
    const t = await getType(type);
    assert.equal(t.latest_version, 1);
    assert.deepEqual(t.versions, [1]);
  });

  test('BACKWARD: narrowing an enum is refused, widening it is accepted; changing a type is refused', async () => {
    const type = newType();
    const v1 = { type: 'object', properties: { level: { enum: ['low', 'high'] }, n: { type: 'integer' } } };
    await register({ type, schema: v1 });
    const narrower = structuredClone(v1);
    narrower.properties.level.enum = ['low'];
    h.assertProblem(await c.post('/v1/schemas', { type, schema: narrower }), 409, 'incompatible_schema');
    const retyped = structuredClone(v1);
    retyped.properties.n = { type: 'string' };
    h.assertProblem(await c.post('/v1/schemas', { type, schema: retyped }), 409, 'incompatible_schema');
    const wider = structuredClone(v1);
    wider.properties.level.enum = ['low', 'high', 'critical'];
    assert.equal((await register({ type, schema: wider })).version, 2);
  });

  test('PUT compatibility NONE → 200 {type, compatibility}; then an incompatible version is accepted', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    h.assertProblem(await c.post('/v1/schemas', { type, schema: withRequiredColor() }), 409, 'incompatible_schema');
    await setCompat(type, 'NONE');
    assert.equal((await getType(type)).compatibility, 'NONE');
    assert.equal((await register({ type, schema: withRequiredColor() })).version, 2);
    // the mode survives the new version
    assert.equal((await getType(type)).compatibility, 'NONE');
  });

  test('FORWARD: adding a required property is accepted, removing one is refused', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    await setCompat(type, 'FORWARD');
    assert.equal((await register({ type, schema: withRequiredColor() })).version, 2);
    const dropped = withRequiredColor();
    dropped.required = dropped.required.filter((x) => x !== 'size');
    const p = h.assertProblem(await c.post('/v1/schemas', { type, schema: dropped }), 409, 'incompatible_schema');
    assert.equal(p.compatibility, 'FORWARD', JSON.stringify(p));
    assert.ok(p.errors.some((e) => e.version === 2), `checked against version 2: ${JSON.stringify(p)}`);
    // the same removal is fine under BACKWARD
    await setCompat(type, 'BACKWARD');
    assert.equal((await register({ type, schema: dropped })).version, 3);
  });

  test('FULL: adding a required property is refused, adding an optional one is accepted', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    await setCompat(type, 'FULL');
    const p = h.assertProblem(await c.post('/v1/schemas', { type, schema: withRequiredColor() }), 409, 'incompatible_schema');
    assert.equal(p.compatibility, 'FULL', JSON.stringify(p));
    assert.equal((await register({ type, schema: withOptionalColor() })).version, 2);
  });

  test('BACKWARD_TRANSITIVE checks every earlier version, BACKWARD only the latest', async () => {
    const type = newType();
    const v1 = { type: 'object', properties: { x: { type: 'string' } } };
    const v2 = { type: 'object', properties: { x: { type: 'integer' } } };
    const v3 = { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'string' } } };
    await register({ type, schema: v1 });
    await setCompat(type, 'NONE');
    assert.equal((await register({ type, schema: v2 })).version, 2);
    await setCompat(type, 'BACKWARD_TRANSITIVE');
    const p = h.assertProblem(await c.post('/v1/schemas', { type, schema: v3 }), 409, 'incompatible_schema');
    assert.equal(p.compatibility, 'BACKWARD_TRANSITIVE', JSON.stringify(p));
    assert.ok(p.errors.some((e) => e.version === 1), `a reason against version 1: ${JSON.stringify(p)}`);
    assert.ok(!p.errors.some((e) => e.version === 2), `v3 is compatible with v2: ${JSON.stringify(p)}`);
    await setCompat(type, 'BACKWARD');
    assert.equal((await register({ type, schema: v3 })).version, 3);
  });

  test('every mode name is accepted and shown; a bad mode → 400 invalid_request; unknown type → 404', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    for (const m of ['FORWARD', 'FULL', 'NONE', 'BACKWARD_TRANSITIVE', 'FORWARD_TRANSITIVE', 'FULL_TRANSITIVE', 'BACKWARD']) {
      await setCompat(type, m);
      assert.equal((await getType(type)).compatibility, m);
      const list = h.assertStatus(await c.get('/v1/schemas'), 200);
      assert.equal(list.schemas.find((x) => x.type === type).compatibility, m);
    }
    for (const body of [{ compatibility: 'SIDEWAYS' }, { compatibility: 3 }, {}, { compatibility: 'NONE', extra: 1 }]) {
      h.assertProblem(await c.request('PUT', `/v1/schemas/${type}/compatibility`, { json: body }), 400, 'invalid_request');
    }
    assert.equal((await getType(type)).compatibility, 'BACKWARD', 'a refused change changes nothing');
    h.assertProblem(await c.request('PUT', `/v1/schemas/${newType()}/compatibility`, { json: { compatibility: 'NONE' } }), 404, 'not_found');
  });
});

// ------------------------------------------------------------------ listing

describe('GET /v1/schemas', () => {
  test('every type sorted by name with its summary, including the shipped catalog', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    await register({ type, schema: withOptionalColor() });
    const list = h.assertStatus(await c.get('/v1/schemas'), 200);
    assert.ok(Array.isArray(list.schemas), JSON.stringify(list).slice(0, 500));
    const types = list.schemas.map((x) => x.type);
    assert.deepEqual(types, [...types].sort(), 'sorted by type');
    assert.equal(new Set(types).size, types.length, 'each type once');
    assert.ok(list.schemas.length >= 40, `dozens of catalog types: ${list.schemas.length}`);
    const mine = list.schemas.find((x) => x.type === type);
    assertSummary(mine, { type, stream: `${seg(type)}.events`, latest: 2, versions: [1, 2] });
    assert.ok(!('schema' in mine) || mine.schema === undefined || typeof mine.schema === 'object');
    const fu = list.schemas.find((x) => x.type === 'file.uploaded');
    assert.ok(fu, 'the catalog type file.uploaded is listed');
    assert.equal(fu.stream, 'contextual.events');
    for (const x of list.schemas) {
      for (const f of ['type', 'stream', 'description', 'compatibility', 'deprecated', 'latest_version', 'versions']) {
        assert.ok(f in x, `${x.type} has ${f}`);
      }
      assert.equal(x.latest_version, x.versions[x.versions.length - 1], x.type);
    }
  });
});

// ------------------------------------------------------------------ scopes and tenants

describe('scopes and tenants', () => {
  test('writes need schemas, reads need read; no token → 401', async () => {
    const type = newType();
    const ro = s.client((await h.createKey(s, 'default', ['read'])).token);
    const sc = s.client((await h.createKey(s, 'default', ['schemas'])).token);
    const pub = s.client((await h.createKey(s, 'default', ['publish'])).token);

    h.assertProblem(await ro.post('/v1/schemas', { type, schema: baseSchema() }), 403, 'forbidden');
    h.assertProblem(await pub.post('/v1/schemas', { type, schema: baseSchema() }), 403, 'forbidden');
    h.assertProblem(await c.post('/v1/schemas', { type, schema: baseSchema() }, { token: null }), 401, 'unauthenticated');
    h.assertProblem(await c.get(`/v1/schemas/${type}`), 404, 'not_found');

    assert.equal((await register({ type, schema: baseSchema() }, 201, sc)).version, 1);
    h.assertProblem(await ro.request('PUT', `/v1/schemas/${type}/compatibility`, { json: { compatibility: 'NONE' } }), 403, 'forbidden');
    h.assertProblem(await ro.del(`/v1/schemas/${type}`), 403, 'forbidden');
    h.assertStatus(await sc.request('PUT', `/v1/schemas/${type}/compatibility`, { json: { compatibility: 'FULL' } }), 200);

    // reads with read
    h.assertStatus(await ro.get('/v1/schemas'), 200);
    h.assertStatus(await ro.get(`/v1/schemas/${type}`), 200);
    h.assertStatus(await ro.get(`/v1/schemas/${type}/versions`), 200);
    h.assertStatus(await ro.get(`/v1/schemas/${type}/versions/1`), 200);
    assert.equal(h.assertStatus(await ro.post(`/v1/schemas/${type}/validate`, goodData()), 200).valid, true);
    h.assertProblem(await pub.get('/v1/schemas'), 403, 'forbidden');
    h.assertProblem(await pub.get(`/v1/schemas/${type}`), 403, 'forbidden');
    h.assertProblem(await c.get('/v1/schemas', { token: null }), 401, 'unauthenticated');
  });

  // Issue 13 sealed the tenants: the namespaces in detail are schema_tenants.test.js's.
  test('a type tenant default registers is global: it validates every tenant\'s events; another tenant\'s is its own', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    const acme = s.client((await h.createKey(s, 'acme', ['schemas', 'publish', 'read'])).token);
    // another tenant sees it and its publishes are validated by it, but it may not change it
    assert.equal((await getType(type, acme)).latest_version, 1);
    h.assertStatus(await acme.publish({ type, data: goodData() }), 201);
    h.assertProblem(await acme.publish({ type, data: { name: 'x' } }), 422, 'schema_violation');
    h.assertProblem(await acme.post('/v1/schemas', { type, schema: baseSchema() }), 403, 'forbidden');
    // a type another tenant registers is private to it
    const own = newType();
    await register({ type: own, schema: baseSchema() }, 201, acme);
    h.assertStatus(await acme.publish({ type: own, data: goodData() }), 201);
    h.assertProblem(await c.get(`/v1/schemas/${own}`), 404, 'not_found');
    h.assertProblem(await c.publish({ type: own, data: goodData() }), 422, 'unknown_type');
  });
});

// ------------------------------------------------------------------ validate endpoint

describe('POST /v1/schemas/{type}/validate', () => {
  let type;
  before(async () => {
    type = newType();
    await register({ type, schema: baseSchema() });
    await register({ type, schema: withOptionalColor() });
  });

  test('valid data → {valid: true, version: latest, errors: []}', async () => {
    const r = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, goodData({ color: 'red' })), 200);
    assert.equal(r.valid, true, JSON.stringify(r));
    assert.equal(r.version, 2);
    assert.deepEqual(r.errors, []);
  });

  test('invalid data → valid: false with every error, paths relative to the body', async () => {
    const r = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, { name: '', size: -3, tags: ['ok', 7, null], color: 1 }), 200);
    assert.equal(r.valid, false, JSON.stringify(r));
    assert.equal(r.version, 2);
    const got = r.errors.map((e) => `${e.path} ${e.keyword}`).sort();
    assert.deepEqual(got, ['/color type', '/name minLength', '/size minimum', '/tags/1 type', '/tags/2 type'], JSON.stringify(r));
    for (const e of r.errors) assert.ok(typeof e.message === 'string' && e.message.length > 0, JSON.stringify(e));
  });

  test('missing required properties are each reported', async () => {
    const r = h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, { tags: [] }), 200);
    assert.equal(r.valid, false);
    const errs = r.errors.map((e) => ({ ...e, index: 0 }));
    assert.ok(reportsMissing(errs, '', 'name'), JSON.stringify(r));
    assert.ok(reportsMissing(errs, '', 'size'), JSON.stringify(r));
  });

  test('?version=N validates against that version', async () => {
    const data = goodData({ color: 5 }); // v1 (open object) allows any color; v2 wants a string
    const r1 = h.assertStatus(await c.post(`/v1/schemas/${type}/validate?version=1`, data), 200);
    assert.equal(r1.valid, true, JSON.stringify(r1));
    assert.equal(r1.version, 1);
    const r2 = h.assertStatus(await c.post(`/v1/schemas/${type}/validate?version=2`, data), 200);
    assert.equal(r2.valid, false, JSON.stringify(r2));
    assert.equal(r2.version, 2);
    assert.deepEqual(r2.errors.map((e) => e.path), ['/color']);
    const r3 = await c.post(`/v1/schemas/${type}/validate?version=9`, data);
    assert.ok(r3.status === 404 || r3.status === 422, `unknown version refused: ${h.describeRes(r3)}`);
    assert.match(r3.contentType, /^application\/problem\+json/);
  });

  test('nothing is stored', async () => {
    const head = await headPosition();
    for (let i = 0; i < 3; i++) h.assertStatus(await c.post(`/v1/schemas/${type}/validate`, goodData()), 200);
    assert.equal(await headPosition(), head);
    const q = h.assertStatus(await c.get('/v1/events?type=' + type), 200);
    assert.equal(q.events.length, 0);
  });
});

// ------------------------------------------------------------------ publishing

describe('validation on publish', () => {
  let type;
  let stream;
  before(async () => {
    type = newType();
    stream = `${seg(type)}.registered_stream`;
    await register({ type, stream, schema: baseSchema() });
  });

  test('a valid event → 201 on the type\'s registered stream; stored with schema_version 1', async () => {
    const res = await c.publish({ type, data: goodData() });
    h.assertStatus(res, 201);
    assert.equal(res.body.stream, stream, 'no stream in the envelope → the type\'s registered stream');
    const ev = h.assertStatus(await c.get('/v1/events/' + res.body.id), 200);
    assert.equal(ev.schema_version, 1);
    assert.equal(ev.stream, stream);
    assert.deepEqual(ev.data, goodData());
  });

  test('an explicit stream in the envelope wins', async () => {
    const res = await c.publish({ type, data: goodData(), stream: 'explicit.stream' });
    h.assertStatus(res, 201);
    assert.equal(res.body.stream, 'explicit.stream');
  });

  test('422 schema_violation lists every violation with index 0 and /data paths; nothing stored', async () => {
    const id = 'sv-' + h.rand(4);
    const head = await headPosition();
    const res = await c.publish({ id, type, data: { name: 5, size: 'big', tags: [1, 'ok', false] } });
    const p = h.assertProblem(res, 422, 'schema_violation');
    assert.deepEqual(violations(p), ['0 /data/name type', '0 /data/size type', '0 /data/tags/0 type', '0 /data/tags/2 type'], res.text);
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
    assert.equal(await headPosition(), head);
  });

  test('missing required properties are reported under /data', async () => {
    const p = h.assertProblem(await c.publish({ type, data: { tags: [] } }), 422, 'schema_violation');
    violations(p);
    assert.ok(reportsMissing(p.errors, '/data', 'name'), JSON.stringify(p));
    assert.ok(reportsMissing(p.errors, '/data', 'size'), JSON.stringify(p));
  });

  test('an atomic batch with bad events → 422 with each error\'s index; nothing stored', async () => {
    const tag = h.rand(4);
    const batch = [
      { id: `ab0-${tag}`, type, data: goodData() },
      { id: `ab1-${tag}`, type, data: goodData({ size: -1 }) },
      { id: `ab2-${tag}`, type, data: goodData() },
      { id: `ab3-${tag}`, type, data: goodData({ name: '', tags: 'x' }) },
    ];
    const head = await headPosition();
    const res = await c.publish(batch);
    const p = h.assertProblem(res, 422, 'schema_violation');
    assert.deepEqual(violations(p), ['1 /data/size minimum', '3 /data/name minLength', '3 /data/tags type'], res.text);
    for (const e of batch) h.assertProblem(await c.get('/v1/events/' + e.id), 404, 'not_found');
    assert.equal(await headPosition(), head);
  });

  test('envelope errors take precedence over schema errors in one atomic batch; all are listed', async () => {
    const tag = h.rand(4);
    const batch = [
      { id: `ep0-${tag}`, type, data: goodData({ size: 'x' }) },   // schema violation
      { id: `ep1-${tag}`, type: 'Bad-Type', data: {} },           // envelope
      { id: `ep2-${tag}`, type, data: goodData(), bogus: true },  // envelope
    ];
    const res = await c.publish(batch);
    const p = h.assertProblem(res, 400, 'invalid_envelope');
    const got = p.errors.map((e) => `${e.index} ${e.path}`);
    for (const want of ['1 /type', '2 /bogus', '0 /data/size']) assert.ok(got.includes(want), `${want} in ${res.text}`);
    for (const e of batch) h.assertProblem(await c.get('/v1/events/' + e.id), 404, 'not_found');
  });

  test('an unregistered type → 422 unknown_type; nothing stored', async () => {
    const id = 'ut-' + h.rand(4);
    const unknown = newType();
    h.assertProblem(await c.publish({ id, type: unknown, data: {} }), 422, 'unknown_type');
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
    const tag = h.rand(4);
    const r = await c.publish([{ id: `ut0-${tag}`, type, data: goodData() }, { id: `ut1-${tag}`, type: unknown, data: {} }]);
    const p = h.assertProblem(r, 422, 'unknown_type');
    if (Array.isArray(p.errors) && p.errors.length) assert.ok(p.errors.some((e) => e.index === 1), r.text);
    h.assertProblem(await c.get(`/v1/events/ut0-${tag}`), 404, 'not_found');
  });

  test('?atomic=false: each refused event gets its own problem and code in the 207 results', async () => {
    const tag = h.rand(4);
    const dep = newType();
    await register({ type: dep, schema: baseSchema() });
    h.assertStatus(await c.del(`/v1/schemas/${dep}`), 200);
    const batch = [
      { id: `pa0-${tag}`, type, data: goodData() },
      { id: `pa1-${tag}`, type, data: goodData({ size: 1.5, name: 3 }) },
      { id: `pa2-${tag}`, type: newType(), data: {} },
      { id: `pa3-${tag}`, type: 'BAD', data: {} },
      { id: `pa4-${tag}`, type: dep, data: goodData() },
      { id: `pa5-${tag}`, type, data: goodData(), schema_version: 4 },
      { id: `pa6-${tag}`, type, data: goodData({ tags: [] }) },
    ];
    const res = await c.post('/v1/events?atomic=false', batch);
    h.assertStatus(res, 207);
    const r = res.body.results;
    assert.ok(Array.isArray(r) && r.length === batch.length, res.text);
    r.forEach((x, i) => assert.equal(x.index, i, res.text));
    const expect = [[201], [422, 'schema_violation'], [422, 'unknown_type'], [400, 'invalid_envelope'],
      [422, 'deprecated_type'], [422, 'unknown_schema_version'], [201]];
    expect.forEach(([status, code], i) => {
      assert.equal(r[i].status, status, `result ${i}: ${JSON.stringify(r[i])}`);
      if (code) {
        assert.equal(r[i].problem.code, code, `result ${i}: ${JSON.stringify(r[i])}`);
        assert.equal(r[i].problem.status, status, `result ${i}: ${JSON.stringify(r[i])}`);
      } else {
        assert.equal(r[i].id, batch[i].id);
        assert.ok(Number.isInteger(r[i].position));
      }
    });
    const paths = r[1].problem.errors.map((e) => `${e.path} ${e.keyword}`).sort();
    assert.deepEqual(paths, ['/data/name type', '/data/size type'], JSON.stringify(r[1]));
    for (const i of [0, 6]) h.assertStatus(await c.get(`/v1/events/pa${i}-${tag}`), 200);
    for (const i of [1, 2, 3, 4, 5]) h.assertProblem(await c.get(`/v1/events/pa${i}-${tag}`), 404, 'not_found');
  });
});

describe('schema_version', () => {
  let type;
  before(async () => {
    type = newType();
    await register({ type, schema: baseSchema() });
    await register({ type, schema: withOptionalColor() });
  });

  test('without schema_version the latest validates and is stored', async () => {
    const ok = await c.publish({ type, data: goodData({ color: 'red' }) });
    h.assertStatus(ok, 201);
    assert.equal(h.assertStatus(await c.get('/v1/events/' + ok.body.id), 200).schema_version, 2);
    const p = h.assertProblem(await c.publish({ type, data: goodData({ color: 5 }) }), 422, 'schema_violation');
    assert.deepEqual(violations(p), ['0 /data/color type']);
  });

  test('schema_version pins an older version; the stored event shows it', async () => {
    const res = await c.publish({ type, data: goodData({ color: 5 }), schema_version: 1 });
    h.assertStatus(res, 201);
    const ev = h.assertStatus(await c.get('/v1/events/' + res.body.id), 200);
    assert.equal(ev.schema_version, 1);
    assert.deepEqual(ev.data, goodData({ color: 5 }));
    const r2 = await c.publish({ type, data: goodData({ color: 'blue' }), schema_version: 2 });
    h.assertStatus(r2, 201);
    assert.equal(h.assertStatus(await c.get('/v1/events/' + r2.body.id), 200).schema_version, 2);
    // the pinned version still validates
    h.assertProblem(await c.publish({ type, data: { name: 'x' }, schema_version: 1 }), 422, 'schema_violation');
  });

  test('an unknown schema_version → 422 unknown_schema_version; nothing stored', async () => {
    for (const v of [3, 99]) {
      const id = 'usv-' + h.rand(4);
      h.assertProblem(await c.publish({ id, type, data: goodData(), schema_version: v }), 422, 'unknown_schema_version');
      h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
    }
  });

  test('a malformed schema_version is an envelope error', async () => {
    for (const v of ['1', -1, 1.5]) {
      const p = h.assertProblem(await c.publish({ type, data: goodData(), schema_version: v }), 400, 'invalid_envelope');
      assert.ok(p.errors.some((e) => e.path === '/schema_version'), JSON.stringify(p));
    }
  });
});

// ------------------------------------------------------------------ deprecation

describe('deprecation', () => {
  test('DELETE → 200 summary with deprecated: true; publishing → 422 deprecated_type; history readable; a new version revives', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    const before = await c.publish({ type, data: goodData(), key: 'k1' });
    h.assertStatus(before, 201);

    const del = h.assertStatus(await c.del(`/v1/schemas/${type}`), 200);
    assertSummary(del, { type, stream: `${seg(type)}.events`, latest: 1, versions: [1], deprecated: true });
    const t = await getType(type);
    assert.equal(t.deprecated, true);
    assert.deepEqual(t.schema, baseSchema(), 'the schema stays readable');
    assert.equal(h.assertStatus(await c.get('/v1/schemas'), 200).schemas.find((x) => x.type === type).deprecated, true);
    h.assertStatus(await c.get(`/v1/schemas/${type}/versions/1`), 200);

    const id = 'dep-' + h.rand(4);
    h.assertProblem(await c.publish({ id, type, data: goodData() }), 422, 'deprecated_type');
    h.assertProblem(await c.publish([{ type, data: goodData() }]), 422, 'deprecated_type');
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');

    // history stays readable
    const old = h.assertStatus(await c.get('/v1/events/' + before.body.id), 200);
    assert.equal(old.type, type);
    const q = h.assertStatus(await c.get('/v1/events?type=' + type), 200);
    assert.deepEqual(q.events.map((e) => e.id), [before.body.id]);

    // deprecating twice is harmless
    assert.equal(h.assertStatus(await c.del(`/v1/schemas/${type}`), 200).deprecated, true);

    // a new version revives it
    const v2 = await register({ type, schema: withOptionalColor() });
    assert.equal(v2.version, 2);
    const t2 = await getType(type);
    assert.equal(t2.deprecated, false);
    assert.equal(t2.latest_version, 2);
    const after = await c.publish({ type, data: goodData({ color: 'red' }), key: 'k1' });
    h.assertStatus(after, 201);
    assert.equal(after.body.version, 2, 'the key continues its versions');
  });
});

// ------------------------------------------------------------------ unknown types allowed

describe('SLUICE_ALLOW_UNKNOWN_TYPES=1', () => {
  let s2;
  let c2;
  before(async () => { s2 = await h.startSluice({ name: 'schemas-allow', env: { SLUICE_ALLOW_UNKNOWN_TYPES: '1' } }); c2 = s2.client(); });
  after(async () => { if (s2) await s2.stop().finally(() => s2.cleanup()); });

  test('an unregistered type is stored with schema_version null; registered types are still validated', async () => {
    const type = newType();
    const res = await c2.publish({ type, data: { anything: [1, 2] } });
    h.assertStatus(res, 201);
    assert.equal(res.body.stream, `${seg(type)}.events`);
    const ev = h.assertStatus(await c2.get('/v1/events/' + res.body.id), 200);
    assert.ok('schema_version' in ev);
    assert.equal(ev.schema_version, null);

    // the catalog is there and validates
    const p = h.assertProblem(await c2.publish({ type: 'file.uploaded', data: { file_size: 'big' } }), 422, 'schema_violation');
    assert.ok(p.errors.some((e) => e.path === '/data/file_size' && e.keyword === 'type'), JSON.stringify(p));

    // once registered, the type is validated
    const t2 = newType();
    await register({ type: t2, schema: baseSchema() }, 201, c2);
    h.assertProblem(await c2.publish({ type: t2, data: {} }), 422, 'schema_violation');
    const ok = await c2.publish({ type: t2, data: goodData() });
    h.assertStatus(ok, 201);
    assert.equal(h.assertStatus(await c2.get('/v1/events/' + ok.body.id), 200).schema_version, 1);
  });
});

// ------------------------------------------------------------------ two instances

describe('two instances on one database', () => {
  let db;
  let A;
  let B;
  before(async () => {
    db = await h.freshDatabase();
    A = await h.startSluice({ name: 'schemas-a', dbUrl: db.url, env: STRICT });
    B = await h.startSluice({ name: 'schemas-b', dbUrl: db.url, env: STRICT, adminToken: A.adminToken });
  });
  after(async () => {
    try {
      if (B) await B.stop().finally(() => B.cleanup());
      if (A) await A.stop().finally(() => A.cleanup());
    } finally {
      if (db) db.drop();
    }
  });

  test('a type registered, changed and deprecated on A is seen by B within about a second', async () => {
    const a = A.client();
    const b = B.client();
    const type = newType();
    h.assertProblem(await b.publish({ type, data: goodData() }), 422, 'unknown_type');

    await register({ type, schema: baseSchema() }, 201, a);
    const first = await h.waitFor(async () => {
      const r = await b.publish({ type, data: goodData() });
      return r.status === 201 ? r : false;
    }, { timeout: 15000, interval: 100, what: 'B to accept the type registered on A' });
    assert.equal(h.assertStatus(await b.get('/v1/events/' + first.body.id), 200).schema_version, 1);
    // B validates with A's schema
    h.assertProblem(await b.publish({ type, data: { name: 'x' } }), 422, 'schema_violation');
    assert.equal((await getType(type, b)).latest_version, 1);

    // a new version on A: B validates with it and stores its number
    await register({ type, schema: withOptionalColor() }, 201, a);
    await h.waitFor(async () => (await b.publish({ type, data: goodData({ color: 5 }) })).status === 422,
      { timeout: 15000, interval: 100, what: 'B to validate with version 2' });
    const v2 = await b.publish({ type, data: goodData({ color: 'red' }) });
    h.assertStatus(v2, 201);
    assert.equal(h.assertStatus(await b.get('/v1/events/' + v2.body.id), 200).schema_version, 2);
    assert.deepEqual((await getType(type, b)).versions, [1, 2]);

    // compatibility mode set on A is enforced by B
    await setCompatOn(a, type, 'NONE');
    await h.waitFor(async () => (await getType(type, b)).compatibility === 'NONE',
      { timeout: 15000, interval: 100, what: 'B to see compatibility NONE' });
    assert.equal((await register({ type, schema: withRequiredColor() }, 201, b)).version, 3);
    await h.waitFor(async () => (await getType(type, a)).latest_version === 3,
      { timeout: 15000, interval: 100, what: 'A to see version 3 registered on B' });

    // deprecation on A
    h.assertStatus(await a.del(`/v1/schemas/${type}`), 200);
    await h.waitFor(async () => (await b.publish({ type, data: goodData({ color: 'red' }) })).status === 422,
      { timeout: 15000, interval: 100, what: 'B to refuse the deprecated type' });
    h.assertProblem(await b.publish({ type, data: goodData({ color: 'red' }) }), 422, 'deprecated_type');
  });
});

async function setCompatOn(client, type, compatibility) {
  const res = await client.request('PUT', `/v1/schemas/${type}/compatibility`, { json: { compatibility } });
  h.assertStatus(res, 200);
  assert.equal(res.body.compatibility, compatibility);
}

// ------------------------------------------------------------------ concurrency

describe('publishing while a schema version is added', () => {
  test('every publish gets 201 or 422 (never 5xx); every stored event has schema_version 1 or 2', async () => {
    const type = newType();
    await register({ type, schema: baseSchema() });
    const CLIENTS = 8;
    const results = []; // {status, id, startedAt}
    let stop = false;
    let registeredAt = Infinity;
    let n = 0;
    const worker = async (w) => {
      while (!stop) {
        const i = n++;
        // every 5th event is invalid under both versions (size missing)
        const data = i % 5 === 4 ? { name: 'bad' } : goodData({ color: 'red', w, i });
        const id = `cc-${w}-${i}-${h.rand(2)}`;
        const startedAt = Date.now();
        let res;
        try {
          res = await c.publish({ id, type, data });
        } catch (e) {
          res = { status: 'no answer', body: null, text: String(e) };
          stop = true;
        }
        results.push({ status: res.status, id, startedAt, code: res.body && res.body.code, valid: i % 5 !== 4, text: res.text });
      }
    };
    const workers = Array.from({ length: CLIENTS }, (_, w) => worker(w));
    try {
      await h.waitFor(() => results.length >= 200 || stop, { timeout: 120000, what: '200 publishes before the new version' });
      const reg = await register({ type, schema: withOptionalColor() });
      assert.equal(reg.version, 2);
      registeredAt = Date.now();
      const mark = results.length;
      await h.waitFor(() => results.length >= mark + 200 || stop, { timeout: 120000, what: '200 publishes after the new version' });
    } finally {
      stop = true;
      await Promise.all(workers);
    }

    const bad = results.filter((r) => !(r.status === 201 || r.status === 422));
    assert.deepEqual(bad.map((r) => `${r.status} ${r.text.slice(0, 200)}`), [], 'only 201 and 422');
    for (const r of results) {
      if (r.valid) assert.equal(r.status, 201, `valid event ${r.id}: ${r.text.slice(0, 300)}`);
      else assert.equal(r.code, 'schema_violation', `invalid event ${r.id}: ${r.text.slice(0, 300)}`);
    }

    const { events } = await h.readAllPages(c, { type }, { limit: 1000 });
    const created = new Set(results.filter((r) => r.status === 201).map((r) => r.id));
    assert.equal(events.length, created.size, 'every 201 stored once, nothing else');
    const byId = new Map(events.map((e) => [e.id, e]));
    for (const id of created) assert.ok(byId.has(id), `stored ${id}`);
    const counts = { 1: 0, 2: 0 };
    for (const e of events) {
      assert.ok(e.schema_version === 1 || e.schema_version === 2, `schema_version of ${e.id}: ${e.schema_version}`);
      counts[e.schema_version]++;
    }
    assert.ok(counts[1] > 0 && counts[2] > 0, `both versions used: ${JSON.stringify(counts)}`);
    // read your writes on one instance: a publish started after the registration answered
    // is validated by (and stamped with) the new version
    for (const r of results) {
      if (r.status === 201 && r.startedAt > registeredAt) {
        assert.equal(byId.get(r.id).schema_version, 2, `${r.id} started after version 2 was registered`);
      }
    }
  });
});
