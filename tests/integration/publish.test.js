'use strict';
// Issue 2: POST /v1/events — single events, atomic batches, partial batches, envelope checks,
// and the HTTP-level answers (404, 405, 415, invalid JSON).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'publish' }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

const ok = (extra = {}) => ({ type: 'file.stored', data: { name: 'a.txt', size: 12 }, ...extra });

describe('single publish', () => {
  test('201 with id, position, stream, key, version, time; stored as sent', async () => {
    const before = Date.now();
    const res = await c.publish({ type: 'file.stored', data: { name: 'a.txt', file_size: 12, nested: { x: [1, 'two', null, true] } },
      user_id: 'u-1', source: 'tests', metadata: { trace: 'abc' } });
    h.assertStatus(res, 201);
    assert.match(res.contentType, /^application\/json/);
    const b = res.body;
    for (const f of ['id', 'position', 'stream', 'key', 'version', 'time']) assert.ok(f in b, `201 has ${f}: ${res.text}`);
    assert.match(b.id, h.ULID_RE, 'default id is a ULID');
    assert.ok(Number.isInteger(b.position) && b.position > 0, 'position is a positive integer');
    assert.equal(b.stream, 'file.events', 'stream defaults to <first segment>.events');
    assert.equal(b.key, null);
    assert.equal(b.version, null, 'no key → version null');
    assert.match(b.time, h.TIME_RE, 'time is RFC 3339 UTC with milliseconds');
    const t = Date.parse(b.time);
    assert.ok(t >= before - 5 * 60000 && t <= Date.now() + 5 * 60000, `time is about now: ${b.time}`);

    const got = await c.get('/v1/events/' + encodeURIComponent(b.id));
    h.assertStatus(got, 200);
    const ev = got.body;
    assert.equal(ev.id, b.id);
    assert.equal(ev.position, b.position);
    assert.equal(ev.type, 'file.stored');
    assert.equal(ev.stream, 'file.events');
    assert.equal(ev.time, b.time);
    assert.deepEqual(ev.data, { name: 'a.txt', file_size: 12, nested: { x: [1, 'two', null, true] } });
    assert.deepEqual(ev.metadata, { trace: 'abc' });
    assert.equal(ev.user_id, 'u-1');
    assert.equal(ev.source, 'tests');
    assert.equal(ev.correlation_id, b.id, 'correlation_id defaults to id');
    assert.equal(ev.tenant_id, 'default', 'the admin token belongs to tenant default');
    assert.ok('schema_version' in ev, 'stored event carries schema_version');
    assert.equal(ev.version, null);
  });

  test('client id, explicit stream, key and all optional fields are kept', async () => {
    const id = 'client:' + h.rand(4);
    const env = { id, type: 'order.placed.ok', data: { n: 1 }, stream: 'shop.orders', key: 'order-1',
      correlation_id: 'corr-' + h.rand(3), causation_id: 'cause-1', user_id: 'u-2', source: 'svc/a', metadata: {} };
    const res = await c.publish(env);
    h.assertStatus(res, 201);
    assert.equal(res.body.id, id);
    assert.equal(res.body.stream, 'shop.orders');
    assert.equal(res.body.key, 'order-1');
    assert.equal(res.body.version, 1);
    const ev = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(id)), 200);
    for (const f of ['type', 'stream', 'key', 'correlation_id', 'causation_id', 'user_id', 'source']) {
      assert.equal(ev[f], env[f], f);
    }
    assert.deepEqual(ev.data, { n: 1 });
  });

  test('positions strictly increase across sequential publishes', async () => {
    let last = 0;
    for (let i = 0; i < 15; i++) {
      const res = await c.publish(ok({ data: { i } }));
      h.assertStatus(res, 201);
      assert.ok(res.body.position > last, `position ${res.body.position} > ${last}`);
      last = res.body.position;
    }
  });

  test('charset parameter on application/json is accepted', async () => {
    const res = await c.request('POST', '/v1/events', { body: JSON.stringify(ok()),
      headers: { 'Content-Type': 'application/json; charset=utf-8' } });
    h.assertStatus(res, 201);
  });

  test('UTF-8 data round-trips', async () => {
    const data = { s: 'héllo wörld — 日本語 🎉', esc: 'quote " backslash \\ nl \n' };
    const res = await c.publish(ok({ data }));
    h.assertStatus(res, 201);
    const ev = h.assertStatus(await c.get('/v1/events/' + res.body.id), 200);
    assert.deepEqual(ev.data, data);
  });

  test('boundary lengths are accepted: type 128, key 256, id 64, strings 256', async () => {
    const type = 'a' + '.b'.repeat(63) + 'c'; // 1 + 126 + 1 = 128
    assert.equal(type.length, 128);
    const res = await c.publish({ type, data: {}, key: 'k'.repeat(256), id: 'I'.repeat(64),
      correlation_id: 'c'.repeat(256), causation_id: 'd'.repeat(256), user_id: 'u'.repeat(256), source: 's'.repeat(256) });
    h.assertStatus(res, 201);
    assert.equal(res.body.stream, 'a.events');
    assert.equal(res.body.key, 'k'.repeat(256));
  });
});

describe('envelope checks: 400 invalid_envelope with every violation', () => {
  // [envelope, expected JSON Pointer]
  const cases = [
    [{ type: 'File.uploaded', data: {} }, '/type'],
    [{ type: 'file', data: {} }, '/type'],
    [{ type: 'file..x', data: {} }, '/type'],
    [{ type: '1file.x', data: {} }, '/type'],
    [{ type: 'file.x.', data: {} }, '/type'],
    [{ type: 'file-x.y', data: {} }, '/type'],
    [{ type: 'a' + '.b'.repeat(64), data: {} }, '/type'], // 129 chars
    [{ type: 42, data: {} }, '/type'],
    [{ type: 'file.x', data: [1] }, '/data'],
    [{ type: 'file.x', data: 'str' }, '/data'],
    [{ type: 'file.x', data: null }, '/data'],
    [{ type: 'file.x', data: {}, stream: 7 }, '/stream'],
    [{ type: 'file.x', data: {}, key: 'k'.repeat(257) }, '/key'],
    [{ type: 'file.x', data: {}, key: 5 }, '/key'],
    [{ type: 'file.x', data: {}, key: 'k', expected_version: -1 }, '/expected_version'],
    [{ type: 'file.x', data: {}, key: 'k', expected_version: 'one' }, '/expected_version'],
    [{ type: 'file.x', data: {}, key: 'k', expected_version: 1.5 }, '/expected_version'],
    [{ type: 'file.x', data: {}, id: 'has space' }, '/id'],
    [{ type: 'file.x', data: {}, id: '' }, '/id'],
    [{ type: 'file.x', data: {}, id: 'x'.repeat(65) }, '/id'],
    [{ type: 'file.x', data: {}, id: 'a/b' }, '/id'],
    [{ type: 'file.x', data: {}, id: 17 }, '/id'],
    [{ type: 'file.x', data: {}, correlation_id: 'c'.repeat(257) }, '/correlation_id'],
    [{ type: 'file.x', data: {}, causation_id: 'c'.repeat(257) }, '/causation_id'],
    [{ type: 'file.x', data: {}, user_id: 'u'.repeat(257) }, '/user_id'],
    [{ type: 'file.x', data: {}, source: 's'.repeat(257) }, '/source'],
    [{ type: 'file.x', data: {}, user_id: 12 }, '/user_id'],
    [{ type: 'file.x', data: {}, metadata: [1] }, '/metadata'],
    [{ type: 'file.x', data: {}, metadata: 'm' }, '/metadata'],
    [{ type: 'file.x', data: {}, bogus: 1 }, '/bogus'],
  ];
  for (const [env, pointer] of cases) {
    test(`${pointer}: ${JSON.stringify(env).slice(0, 90)}`, async () => {
      const res = await c.publish(env);
      const p = h.assertProblem(res, 400, 'invalid_envelope');
      assert.ok(Array.isArray(p.errors) && p.errors.length >= 1, `errors[]: ${res.text}`);
      const e = p.errors.find((x) => x.path === pointer);
      assert.ok(e, `an error at ${pointer}: ${res.text}`);
      assert.equal(typeof e.keyword, 'string');
      assert.equal(typeof e.message, 'string');
      assert.ok(e.message.length > 0);
    });
  }

  for (const missing of ['type', 'data']) {
    test(`missing ${missing} is reported`, async () => {
      const env = ok();
      delete env[missing];
      const res = await c.publish(env);
      const p = h.assertProblem(res, 400, 'invalid_envelope');
      const e = p.errors.find((x) => x.path === '/' + missing ||
        (x.path === '' && x.keyword === 'required' && x.message.includes(missing)));
      assert.ok(e, `an error naming ${missing}: ${res.text}`);
    });
  }

  test('errors of a single (non-batch) event carry index 0', async () => {
    const res = await c.publish({ type: 'Bad', data: [] });
    const p = h.assertProblem(res, 400, 'invalid_envelope');
    assert.equal(p.errors.length, 2, res.text);
    for (const e of p.errors) assert.equal(e.index, 0, `index in ${JSON.stringify(e)}`);
  });

  test('every violation of one envelope is listed, not the first', async () => {
    const res = await c.publish({ type: 'Bad', data: 3, key: 'k'.repeat(300), id: 'no spaces allowed', source: 9, extra: true });
    const p = h.assertProblem(res, 400, 'invalid_envelope');
    const paths = new Set(p.errors.map((e) => e.path));
    for (const want of ['/type', '/data', '/key', '/id', '/source', '/extra']) {
      assert.ok(paths.has(want), `missing ${want} in ${res.text}`);
    }
    assert.equal(p.errors.length, 6, `one error per violation: ${res.text}`);
  });

  test('a body that is neither an object nor an array is invalid_envelope', async () => {
    for (const body of ['42', '"text"', 'null', 'true']) {
      const res = await c.request('POST', '/v1/events', { body, headers: { 'Content-Type': 'application/json' } });
      h.assertProblem(res, 400, 'invalid_envelope');
    }
  });

  test('a rejected envelope stores nothing', async () => {
    const id = 'rej-' + h.rand(4);
    h.assertProblem(await c.publish({ id, type: 'file.x', data: {}, bogus: 1 }), 400, 'invalid_envelope');
    h.assertProblem(await c.get('/v1/events/' + id), 404, 'not_found');
  });
});

describe('atomic batches', () => {
  test('201 {events:[...]} in order with consecutive positions', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `b-${h.rand(4)}-${i}`);
    const res = await c.publish(ids.map((id, i) => ({ id, type: 'batch.item', data: { i }, key: i < 2 ? 'bk-' + ids[0] : undefined })));
    h.assertStatus(res, 201);
    assert.ok(Array.isArray(res.body.events), res.text);
    assert.equal(res.body.events.length, 5);
    res.body.events.forEach((e, i) => {
      assert.equal(e.id, ids[i]);
      assert.equal(e.stream, 'batch.events');
      assert.match(e.time, h.TIME_RE);
      if (i > 0) assert.equal(e.position, res.body.events[i - 1].position + 1, 'one batch is one commit: consecutive positions');
    });
    assert.equal(res.body.events[0].version, 1);
    assert.equal(res.body.events[1].version, 2);
    assert.equal(res.body.events[2].version, null);
    for (const id of ids) h.assertStatus(await c.get('/v1/events/' + id), 200);
  });

  test('one bad event → 400, every bad field listed with its index, nothing stored', async () => {
    const head = await headPosition();
    const tag = h.rand(4);
    const batch = [
      { id: `g0-${tag}`, type: 'file.stored', data: {} },
      { id: `g1-${tag}`, type: 'Bad-Type', data: 5 },
      { id: `g2-${tag}`, type: 'file.stored', data: {} },
      { id: `g3-${tag}`, type: 'file.stored', data: {}, key: 'k'.repeat(300), user_id: 4 },
      { id: `g4-${tag}`, type: 'file.stored', data: {} },
    ];
    const res = await c.publish(batch);
    const p = h.assertProblem(res, 400, 'invalid_envelope');
    const got = p.errors.map((e) => `${e.index}${e.path}`).sort();
    for (const want of ['1/type', '1/data', '3/key', '3/user_id']) assert.ok(got.includes(want), `${want} in ${res.text}`);
    assert.ok(p.errors.every((e) => e.index === 1 || e.index === 3), `only indexes 1 and 3: ${res.text}`);
    for (const e of batch) h.assertProblem(await c.get('/v1/events/' + e.id), 404, 'not_found');
    assert.equal(await headPosition(), head, 'head_position unchanged');
    const q = h.assertStatus(await c.get('/v1/events?type=file.stored&after=' + head), 200);
    assert.equal(q.events.length, 0, 'nothing stored by the failed batch');
  });

  test('a batch up to SLUICE_MAX_BATCH (default 1000) is accepted; one more is refused and stores nothing', async () => {
    const tag = h.rand(4);
    const big = Array.from({ length: 1000 }, (_, i) => ({ id: `m-${tag}-${i}`, type: 'bulk.item', data: { i } }));
    const res = await c.publish(big);
    h.assertStatus(res, 201);
    assert.equal(res.body.events.length, 1000);
    assert.equal(res.body.events[999].position - res.body.events[0].position, 999);

    const head = await headPosition();
    const tag2 = h.rand(4);
    const tooBig = Array.from({ length: 1001 }, (_, i) => ({ id: `n-${tag2}-${i}`, type: 'bulk.item', data: { i } }));
    const r2 = await c.publish(tooBig);
    assert.ok(r2.status === 400 || r2.status === 413, `1001 events refused with 400/413: ${h.describeRes(r2)}`);
    assert.match(r2.contentType, /^application\/problem\+json/);
    assert.equal(typeof r2.body.code, 'string');
    assert.equal(await headPosition(), head, 'nothing stored');
    h.assertProblem(await c.get(`/v1/events/n-${tag2}-0`), 404, 'not_found');
  });

  test('an empty batch stores nothing and is not a 5xx', async () => {
    const res = await c.publish([]);
    assert.ok(res.status < 500, h.describeRes(res));
  });
});

describe('partial batches (?atomic=false)', () => {
  test('207 with one result per event; valid ones stored, invalid ones not', async () => {
    const tag = h.rand(4);
    const key = 'pk-' + tag;
    const batch = [
      { id: `p0-${tag}`, type: 'file.stored', data: { a: 1 } },
      { id: `p1-${tag}`, type: 'nope', data: {} },
      { id: `p2-${tag}`, type: 'file.stored', data: {}, key, expected_version: 0 },
      { id: `p3-${tag}`, type: 'file.stored', data: {}, key, expected_version: 0 }, // conflicts with p2
      { id: `p4-${tag}`, type: 'file.stored', data: {}, bogus: true },
    ];
    const res = await c.post('/v1/events?atomic=false', batch);
    h.assertStatus(res, 207);
    const r = res.body.results;
    assert.ok(Array.isArray(r) && r.length === 5, res.text);
    r.forEach((x, i) => assert.equal(x.index, i));
    assert.equal(r[0].status, 201);
    assert.equal(r[0].id, `p0-${tag}`);
    assert.ok(Number.isInteger(r[0].position));
    assert.equal(r[1].status, 400);
    assert.equal(r[1].problem.code, 'invalid_envelope');
    assert.equal(r[1].problem.status, 400);
    assert.ok(r[1].problem.errors.some((e) => e.path === '/type'), JSON.stringify(r[1]));
    assert.equal(r[2].status, 201);
    assert.equal(r[2].version, 1);
    assert.equal(r[3].status, 409);
    assert.equal(r[3].problem.code, 'version_conflict');
    assert.equal(r[3].problem.current_version, 1);
    assert.equal(r[4].status, 400);
    assert.ok(r[4].problem.errors.some((e) => e.path === '/bogus'), JSON.stringify(r[4]));
    assert.ok(r[2].position > r[0].position);

    h.assertStatus(await c.get(`/v1/events/p0-${tag}`), 200);
    h.assertStatus(await c.get(`/v1/events/p2-${tag}`), 200);
    for (const i of [1, 3, 4]) h.assertProblem(await c.get(`/v1/events/p${i}-${tag}`), 404, 'not_found');
  });
});

describe('HTTP-level answers', () => {
  test('invalid JSON → 400 invalid_json with line and column', async () => {
    const body = '{\n  "type": "file.stored",\n  "data": {,}\n}';
    const res = await c.request('POST', '/v1/events', { body, headers: { 'Content-Type': 'application/json' } });
    const p = h.assertProblem(res, 400, 'invalid_json');
    assert.equal(p.line, 3, `line: ${res.text}`);
    assert.ok(Number.isInteger(p.column) && Math.abs(p.column - 12) <= 1, `column ≈ 12: ${res.text}`);
  });

  test('truncated and empty bodies → 400 invalid_json', async () => {
    for (const body of ['{"type": "file.stored", "data": {}', '', '[{"type":"a.b","data":{}},', '{"type": "a.b", "data": {}} trailing']) {
      const res = await c.request('POST', '/v1/events', { body, headers: { 'Content-Type': 'application/json' } });
      const p = h.assertProblem(res, 400, 'invalid_json');
      assert.ok(Number.isInteger(p.line) && Number.isInteger(p.column), `line/column for ${JSON.stringify(body)}: ${res.text}`);
    }
  });

  test('wrong content type → 415 unsupported_media_type', async () => {
    for (const ct of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded']) {
      const res = await c.request('POST', '/v1/events', { body: JSON.stringify(ok()), headers: { 'Content-Type': ct } });
      h.assertProblem(res, 415, 'unsupported_media_type');
    }
  });

  test('unknown route → 404 not_found', async () => {
    h.assertProblem(await c.get('/v1/nope'), 404, 'not_found');
    h.assertProblem(await c.get('/nope'), 404, 'not_found');
    h.assertProblem(await c.post('/v1/eventsx', ok()), 404, 'not_found');
  });

  test('unknown event id → 404 not_found', async () => {
    h.assertProblem(await c.get('/v1/events/does-not-exist'), 404, 'not_found');
    h.assertProblem(await c.get('/v1/events/01ARZ3NDEKTSV4RRFFQ69G5FAV'), 404, 'not_found');
  });

  test('wrong method → 405 method_not_allowed with Allow', async () => {
    const r1 = await c.request('DELETE', '/v1/events');
    h.assertProblem(r1, 405, 'method_not_allowed');
    const allow = (r1.headers.get('allow') || '').split(',').map((x) => x.trim().toUpperCase());
    assert.ok(allow.includes('GET') && allow.includes('POST'), `Allow: ${r1.headers.get('allow')}`);
    assert.ok(!allow.includes('DELETE'));

    const r2 = await c.request('PUT', '/health');
    h.assertProblem(r2, 405, 'method_not_allowed');
    assert.ok((r2.headers.get('allow') || '').toUpperCase().includes('GET'), `Allow: ${r2.headers.get('allow')}`);

    const r3 = await c.request('PATCH', '/v1/events/some-id', { body: '{}', headers: { 'Content-Type': 'application/json' } });
    h.assertProblem(r3, 405, 'method_not_allowed');
    assert.ok((r3.headers.get('allow') || '').toUpperCase().includes('GET'), `Allow: ${r3.headers.get('allow')}`);
  });
});

async function headPosition() {
  const res = await c.get('/v1/info');
  h.assertStatus(res, 200);
  assert.ok(Number.isInteger(res.body.head_position), `head_position: ${res.text}`);
  return res.body.head_position;
}
