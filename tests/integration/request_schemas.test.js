'use strict';
// Request bodies are checked against the request schemas of openapi/openapi.yaml
// (server/reqschema.c): what the document allows is accepted — a key name of 256 characters
// that are more than 256 bytes, an integer written 5.0 — and what it refuses is a 400
// invalid_request whose `errors` name each violation by its JSON Pointer and keyword.
// Covers the bodies of API keys, consumer groups and nacks, stream settings, schema
// compatibility and the dead-letter batch reprocess.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { deletePrefix, groupsPath, startGroupsSluice, typeBase } = require('./lib/groups_kit');

const JSON_HEADERS = { 'Content-Type': 'application/json' };

// Asserts a 400 invalid_request listing at least the [path, keyword] pairs of `expected`.
function assertViolations(res, expected) {
  const p = h.assertProblem(res, 400, 'invalid_request');
  assert.ok(Array.isArray(p.errors) && p.errors.length > 0, `errors listed: ${h.describeRes(res)}`);
  for (const e of p.errors) {
    assert.equal(typeof e.path, 'string', `each error has a path: ${JSON.stringify(e)}`);
    assert.equal(typeof e.keyword, 'string', `each error has a keyword: ${JSON.stringify(e)}`);
    assert.equal(typeof e.message, 'string', `each error has a message: ${JSON.stringify(e)}`);
  }
  for (const [path, keyword] of expected) {
    assert.ok(p.errors.some((e) => e.path === path && e.keyword === keyword),
      `expected ${keyword} at "${path}", got ${JSON.stringify(p.errors)}`);
  }
  assert.equal(p.errors.length, expected.length, `exactly the expected violations: ${JSON.stringify(p.errors)}`);
  return p;
}

// A request whose body is the exact text given (JSON.stringify writes 5.0 as 5).
const raw = (c, method, path, text) => c.request(method, path, { body: text, headers: JSON_HEADERS });

describe('request bodies are checked against openapi.yaml', () => {
  let s;
  let c;
  let prefix;
  before(async () => { ({ s, c, prefix } = await startGroupsSluice('request-schemas')); });
  after(async () => {
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  });

  test('POST /v1/keys: a name of 256 characters is accepted although it is 512 bytes; 257 are not', async () => {
    const name = 'é'.repeat(256);
    const key = h.assertStatus(await c.post('/v1/keys', { tenant_id: 'rs-tenant', scopes: ['read'], name }), 201);
    assert.equal(key.name, name);
    assert.equal(key.tenant_id, 'rs-tenant');
    assert.deepEqual(key.scopes, ['read']);
    const listed = h.assertStatus(await c.get('/v1/keys'), 200).keys.find((k) => k.id === key.id);
    assert.equal(listed.name, name, 'stored whole');
    assertViolations(await c.post('/v1/keys', { scopes: ['read'], name: name + 'é' }), [['/name', 'maxLength']]);
  });

  test('POST /v1/keys: unknown field, wrong type, missing field, bad scope and tenant', async () => {
    assertViolations(await c.post('/v1/keys', { scopes: 'read', tenant: 'acme' }),
      [['/scopes', 'type'], ['/tenant', 'additionalProperties']]);
    assertViolations(await c.post('/v1/keys', { name: 'no scopes' }), [['/scopes', 'required']]);
    assertViolations(await c.post('/v1/keys', { tenant_id: 'a b', scopes: ['read', 'bogus'] }),
      [['/tenant_id', 'pattern'], ['/scopes/1', 'enum']]);
    assertViolations(await c.post('/v1/keys', []), [['', 'type']]);
    // what the schema cannot say is still checked: a tenant's admin creates keys for its own tenant
    const other = s.client((await h.createKey(s, 'rs-other', ['admin'])).token);
    h.assertProblem(await other.post('/v1/keys', { tenant_id: 'rs-tenant', scopes: ['read'] }), 403, 'forbidden');
    h.assertStatus(await other.post('/v1/keys', { scopes: ['read'] }), 201);
  });

  test('POST …/groups: integers written as 5.0 are integers; each violation is named', async () => {
    const stream = `${typeBase()}.events`;
    const g = h.assertStatus(await raw(c, 'POST', groupsPath(stream),
      '{"name":"real-ints","start":"0","max_deliveries":5.0,"ack_timeout_ms":1500.0,"retry":{"base_delay_ms":10.0,"jitter":false}}'), 201);
    assert.equal(g.max_deliveries, 5);
    assert.equal(g.ack_timeout_ms, 1500);
    assert.deepEqual(g.retry, { strategy: 'exponential', base_delay_ms: 10, max_delay_ms: 30000, jitter: false });
    const listed = h.assertStatus(await c.get(groupsPath(stream)), 200).groups;
    assert.deepEqual(listed.map((x) => [x.name, x.max_deliveries, x.ack_timeout_ms]), [['real-ints', 5, 1500]]);

    assertViolations(await c.post(groupsPath(stream), { name: 'sluice-mine', start: 'yesterday', retry: { backoff: 'linear' }, max_deliveries: 1001 }),
      [['/name', 'pattern'], ['/start', 'oneOf'], ['/retry/backoff', 'additionalProperties'], ['/max_deliveries', 'maximum']]);
    assertViolations(await c.post(groupsPath(stream), { start: -1 }), [['/name', 'required'], ['/start', 'oneOf']]);
    assertViolations(await raw(c, 'POST', groupsPath(stream), '{"name":"half","max_deliveries":2.5}'), [['/max_deliveries', 'type']]);
    assert.deepEqual(h.assertStatus(await c.get(groupsPath(stream)), 200).groups.map((x) => x.name), ['real-ints'], 'nothing else was created');

    const nack = (b) => c.post(`${groupsPath(stream)}/real-ints/nack`, b);
    assertViolations(await nack({ event_id: 5, retryable: 'no', extra: 1 }),
      [['/event_id', 'type'], ['/retryable', 'type'], ['/extra', 'additionalProperties']]);
    // a nack names its delivery by receipt (consumer API) or by event id (a Redis worker)
    assertViolations(await nack({ error: 'no id' }), [['', 'oneOf']]);
    h.assertProblem(await nack({ event_id: 'no-such-event' }), 404, 'not_found');
  });

  test('PUT /v1/streams/{stream}: retention as the document says it', async () => {
    const path = `/v1/streams/${typeBase()}.events`;
    const set = h.assertStatus(await raw(c, 'PUT', path, '{"retention":{"max_age_ms":60000.0}}'), 200);
    assert.deepEqual(set.retention, { max_age_ms: 60000 });
    assertViolations(await c.request('PUT', path, { json: { retention: { max_age_ms: 0, keep: true }, other: 1 } }),
      [['/retention/max_age_ms', 'minimum'], ['/retention/keep', 'additionalProperties'], ['/other', 'additionalProperties']]);
    assertViolations(await c.request('PUT', path, { json: { retention: {} } }), [['/retention/max_age_ms', 'required']]);
    assertViolations(await raw(c, 'PUT', path, '{"retention":{"max_age_ms":1e300}}'), [['/retention/max_age_ms', 'maximum']]);
    assert.deepEqual(h.assertStatus(await c.get(path), 200).retention, { max_age_ms: 60000 }, 'refused bodies changed nothing');
    h.assertStatus(await c.request('PUT', path, { json: { retention: { max_age_ms: null } } }), 200);
    assert.deepEqual(h.assertStatus(await c.get(path), 200).retention, { max_age_ms: null });
  });

  test('PUT /v1/schemas/{type}/compatibility', async () => {
    const type = `${typeBase()}.thing.happened`;
    h.assertStatus(await c.post('/v1/schemas', { type, schema: { type: 'object' } }), 201);
    const path = `/v1/schemas/${type}/compatibility`;
    assert.equal(h.assertStatus(await c.request('PUT', path, { json: { compatibility: 'FULL' } }), 200).compatibility, 'FULL');
    assertViolations(await c.request('PUT', path, { json: { compatibility: 'full', note: 'x' } }),
      [['/compatibility', 'enum'], ['/note', 'additionalProperties']]);
    assertViolations(await c.request('PUT', path, { json: {} }), [['/compatibility', 'required']]);
    assert.equal(h.assertStatus(await c.get(`/v1/schemas/${type}`), 200).compatibility, 'FULL');
  });

  test('POST /v1/dead-letters/reprocess', async () => {
    const dry = h.assertStatus(await raw(c, 'POST', '/v1/dead-letters/reprocess',
      '{"dry_run":true,"ids":["1",2],"max_age_ms":60000.0,"stream":"none.events","group":"g"}'), 200);
    assert.deepEqual(dry, { dry_run: true, count: 0, has_more: false, dead_letters: [] });
    const go = h.assertStatus(await c.post('/v1/dead-letters/reprocess', { stream: 'none.events', max_per_second: 10 }), 202);
    assert.deepEqual(go, { dry_run: false, count: 0, has_more: false, max_per_second: 10, ids: [] });
    assertViolations(await c.post('/v1/dead-letters/reprocess', { ids: [true], max_per_second: 0, dry_run: 'yes' }),
      [['/ids/0', 'type'], ['/max_per_second', 'minimum'], ['/dry_run', 'type']]);
    assertViolations(await c.post('/v1/dead-letters/reprocess', { max_age_ms: 0, stream: 5, extra: 1 }),
      [['/max_age_ms', 'minimum'], ['/stream', 'type'], ['/extra', 'additionalProperties']]);
  });

  test('a body that is not JSON, or not sent as JSON, is answered before its schema', async () => {
    const res = await c.request('POST', '/v1/keys', { body: '{"scopes":', headers: JSON_HEADERS });
    const p = h.assertProblem(res, 400, 'invalid_json');
    assert.equal(typeof p.line, 'number');
    h.assertProblem(await c.request('POST', '/v1/keys', { body: 'scopes=read', headers: { 'Content-Type': 'text/plain' } }),
      415, 'unsupported_media_type');
  });
});
