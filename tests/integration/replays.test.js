'use strict';
// Issue 5: replays (API.md "Reading and replay"). POST /v1/replays re-publishes a filtered
// range of history into a Redis stream (entry id `<position>-0`, fields id, type, position,
// event); GET /v1/replays/{id} shows progress; DELETE cancels. Checked against an in-test
// model of what was published: every filter delivers exactly its range, in order, once; the
// range is fixed when the job starts; a job killed with kill -9 resumes from its checkpoint
// after a restart without duplicates; cancellation stops it; validation, scopes and tenant
// isolation of every route. Redis is read with ioredis (tests/lib/redis.js).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const redis = require('../lib/redis.js');

const DONE_MS = 60000;

// ---------------------------------------------------------------- Redis

// One command on a connection of its own, to the suite's Redis (tests/lib/redis.js).
const redisCmd = (...args) => redis.command(process.env.SLUICE_REDIS_URL, args);

// Every entry of a stream: [{id, fields, order}].
const xrangeAll = (key) => redis.withRedis(process.env.SLUICE_REDIS_URL, (r) => redis.xrangeAll(r, key));

const deletePrefix = (prefix) => redis.deletePrefix(process.env.SLUICE_REDIS_URL, prefix);

// ---------------------------------------------------------------- helpers

async function pub(client, envs) {
  const res = await client.publish(envs);
  h.assertStatus(res, 201);
  return Array.isArray(envs) ? res.body.events : [res.body];
}

async function startReplay(client, body) {
  const res = await client.post('/v1/replays', body);
  const r = h.assertStatus(res, 202);
  assert.match(r.id, /^rpl_[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.ok(['running', 'done'].includes(r.status), `status ${r.status}`);
  assert.deepEqual(r.target, { redis_stream: body.target.redis_stream });
  assert.deepEqual(r.filter, body.filter || {});
  assert.equal(r.error, null);
  assert.equal(r.max_per_second, body.max_per_second || 5000);
  assert.match(r.created_at, h.TIME_RE);
  return r;
}

async function waitFinished(client, id, timeout = DONE_MS) {
  return h.waitFor(async () => {
    const r = h.assertStatus(await client.get('/v1/replays/' + id), 200);
    return r.status !== 'running' ? r : false;
  }, { timeout, interval: 50, what: `replay ${id} to finish` });
}

// Checks the target holds exactly `want` (model entries, position order), each entry shaped
// as the relay's, its event equal to the stored one.
async function assertTarget(key, want, stored, what) {
  const entries = await xrangeAll(key);
  const got = entries.map((e) => Number(e.id.split('-')[0]));
  const wantPos = want.map((e) => e.position);
  if (got.length !== wantPos.length || got.some((p, i) => p !== wantPos[i])) {
    const gs = new Set(got);
    const ws = new Set(wantPos);
    assert.fail(`${what}: ${got.length} entries, expected ${wantPos.length}; missing ${JSON.stringify(wantPos.filter((p) => !gs.has(p)).slice(0, 20))}; unexpected ${JSON.stringify(got.filter((p) => !ws.has(p)).slice(0, 20))}`);
  }
  for (const e of entries) {
    assert.match(e.id, /^\d+-0$/, `${what}: entry id`);
    assert.deepEqual([...e.order].sort(), ['event', 'id', 'position', 'type'], `${what}: fields`);
    const ev = JSON.parse(e.fields.event);
    assert.equal(String(ev.position), e.fields.position);
    assert.equal(e.id, `${ev.position}-0`);
    assert.equal(ev.id, e.fields.id);
    assert.equal(ev.type, e.fields.type);
    if (stored) assert.deepEqual(ev, stored.get(ev.id), `${what}: the event is the stored envelope`);
  }
  return entries;
}

function typeMatches(list, type) {
  return list.some((t) => (t.endsWith('.*') ? type.startsWith(t.slice(0, -1)) : type === t));
}

// The model's events a replay filter selects, in position order.
function expected(model, f, head) {
  const types = f.types || (f.type ? f.type.split(',') : null);
  const stream = f.stream || (f.streams ? f.streams[0] : undefined);
  const to = f.to_position === undefined || f.to_position > head ? head : f.to_position;
  return model.filter((e) => {
    if (stream !== undefined && e.stream !== stream) return false;
    if (types && !typeMatches(types, e.type)) return false;
    if (f.key !== undefined && e.key !== f.key) return false;
    if (f.correlation_id !== undefined && e.correlation_id !== f.correlation_id) return false;
    if (f.user_id !== undefined && e.user_id !== f.user_id) return false;
    if (f.since !== undefined && Date.parse(e.time) < Date.parse(f.since)) return false;
    if (f.until !== undefined && Date.parse(e.time) >= Date.parse(f.until)) return false;
    if (f.from_position !== undefined && e.position <= f.from_position) return false;
    return e.position <= to;
  }).sort((a, b) => a.position - b.position);
}

// ---------------------------------------------------------------- the shared instance

let s;
let A;
let B;
let prefix;
const model = []; // tenant default: {id, position, type, stream, key, correlation_id, user_id, time}
let stored;       // id → stored envelope (tenant default)
let midTime;

const TYPES = ['order.placed', 'order.paid', 'invoice.sent', 'audit.logged', 'orderx.created'];
const STREAMS = ['orders.events', 'billing.events', 'audit.trail'];

function envelope(i, tag) {
  const e = { id: `${tag}-${i}`, type: TYPES[(i * 7) % TYPES.length], stream: STREAMS[(i * 5) % 3], data: { i } };
  if (i % 4 !== 0) e.key = 'k' + (i % 5);
  if (i % 6 !== 5) e.correlation_id = 'c' + (i % 6);
  if (i % 3 !== 0) e.user_id = 'u' + (i % 4);
  return e;
}

async function publishPhase(client, into, from, to, tag) {
  for (let i = from; i < to;) {
    const n = Math.min(i % 3 === 0 ? 1 : 1 + (i % 40), to - i);
    const envs = Array.from({ length: n }, (_, j) => envelope(i + j, tag));
    const acks = await pub(client, n === 1 ? envs[0] : envs);
    envs.forEach((e, j) => into.push({ id: acks[j].id, position: acks[j].position, type: e.type, stream: acks[j].stream,
      key: e.key ?? null, correlation_id: e.correlation_id ?? acks[j].id, user_id: e.user_id ?? null, time: acks[j].time }));
    i += n;
  }
}

const tgt = (name) => `${prefix}replay:${name}:${h.rand(3)}`;
// Another tenant replays only under its own Redis namespace, <prefix><tenant>:.
const tgtB = (name) => `${prefix}tenant-b:replay:${name}:${h.rand(3)}`;

before(async () => {
  prefix = `itrp${h.rand(4)}:`;
  s = await h.startSluice({ name: 'replays', env: { SLUICE_REDIS_PREFIX: prefix } });
  A = s.client();
  B = s.client((await h.createKey(s, 'tenant-b', ['read', 'publish', 'admin'], 'b')).token);
  await publishPhase(A, model, 0, 700, 'ev');
  await h.sleep(60);
  await publishPhase(A, model, 700, 1200, 'ev');
  const t1 = Date.parse(model[699].time);
  const t2 = Date.parse(model[700].time);
  assert.ok(t2 - t1 >= 2, 'phase 2 starts later than phase 1 ends');
  midTime = new Date(Math.floor((t1 + t2) / 2)).toISOString();
  await publishPhase(B, [], 0, 100, 'evb'); // tenant B: same types, streams, keys, correlations
  const res = await A.get('/v1/events', { headers: { Accept: 'application/x-ndjson' } });
  stored = new Map(res.text.split('\n').filter(Boolean).map((l) => { const e = JSON.parse(l); return [e.id, e]; }));
  assert.equal(stored.size, model.length);
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
  if (prefix) await deletePrefix(prefix);
});

// ---------------------------------------------------------------- exact ranges

describe('a replay delivers exactly the filtered range', () => {
  const FILTERS = () => [
    {},
    { stream: 'orders.events' },
    { streams: ['billing.events'] },
    { types: ['order.*', 'audit.logged'] },
    { type: 'order.placed,invoice.sent' },
    { type: 'order.*' }, // not orderx.created
    { stream: 'orders.events', key: 'k1' },
    { correlation_id: 'c2' },
    { user_id: 'u1' },
    { since: midTime },
    { until: midTime, types: ['order.*'] },
    { from_position: model[40].position, to_position: model[900].position },
    { streams: ['audit.trail'], from_position: model[100].position },
    { to_position: model[50].position },
    { user_id: 'u3', type: 'invoice.sent', from_position: model[10].position, to_position: 999999999 },
  ];
  for (let i = 0; i < 15; i++) {
    test(`filter #${i}`, async () => {
      const f = FILTERS()[i];
      const head = h.assertStatus(await A.get('/v1/info'), 200).head_position; // every tenant's
      const want = expected(model, f, head);
      assert.ok(want.length > 0, 'the filter selects something');
      const key = tgt('f' + i);
      const started = await startReplay(A, { filter: f, target: { redis_stream: key } });
      assert.equal(started.total, want.length, `total for ${JSON.stringify(f)}`);
      assert.equal(started.to_position, f.to_position !== undefined && f.to_position < head ? f.to_position : head, 'to_position');
      assert.equal(started.position, f.from_position || 0, 'the checkpoint starts at from_position');
      const done = await waitFinished(A, started.id);
      assert.equal(done.status, 'done', JSON.stringify(done));
      assert.equal(done.replayed, want.length, 'replayed');
      assert.equal(done.total, want.length, 'total');
      assert.equal(done.position, started.to_position, 'the checkpoint ends at to_position');
      await assertTarget(key, want, stored, JSON.stringify(f));
    });
  }

  test('a filter that selects nothing: done at once, total 0, the target untouched', async () => {
    const key = tgt('none');
    const r = await startReplay(A, { filter: { key: 'no-such-key' }, target: { redis_stream: key } });
    const done = await waitFinished(A, r.id);
    assert.equal(done.status, 'done');
    assert.equal(done.total, 0);
    assert.equal(done.replayed, 0);
    assert.equal(await redisCmd('XLEN', key), 0);
    const empty = await startReplay(A, { filter: { from_position: 5, to_position: 5 }, target: { redis_stream: key } });
    assert.equal(empty.status, 'done');
    assert.equal(empty.total, 0);
  });
});

// ---------------------------------------------------------------- progress, range fixed at start, cancel

describe('progress, the range fixed when the job starts, cancellation', () => {
  test('progress grows page by page; events published after the start are not replayed', async () => {
    const tag = 'prog' + h.rand(2);
    const first = [];
    for (let b = 0; b < 2; b++) {
      const acks = await pub(A, Array.from({ length: 600 }, (_, i) => ({ type: `${tag}.item`, stream: 'prog.events', data: { b, i } })));
      first.push(...acks);
    }
    const key = tgt('prog');
    const r = await startReplay(A, { filter: { type: `${tag}.*` }, target: { redis_stream: key }, max_per_second: 400 });
    assert.equal(r.status, 'running');
    assert.equal(r.total, 1200);
    assert.equal(r.replayed, 0);
    const later = await pub(A, Array.from({ length: 50 }, (_, i) => ({ type: `${tag}.item`, stream: 'prog.events', data: { later: i } })));
    const seen = [];
    const done = await h.waitFor(async () => {
      const x = h.assertStatus(await A.get('/v1/replays/' + r.id), 200);
      seen.push(x);
      return x.status !== 'running' ? x : false;
    }, { timeout: DONE_MS, interval: 100, what: 'the paced replay to finish' });
    assert.equal(done.status, 'done');
    assert.equal(done.replayed, 1200);
    const mid = seen.filter((x) => x.status === 'running' && x.replayed > 0 && x.replayed < 1200);
    assert.ok(mid.length > 0, `progress was visible: ${JSON.stringify(seen.map((x) => [x.status, x.replayed, x.position]))}`);
    for (let i = 1; i < seen.length; i++) {
      assert.ok(seen[i].replayed >= seen[i - 1].replayed && seen[i].position >= seen[i - 1].position, 'progress never goes back');
    }
    const entries = await xrangeAll(key);
    assert.deepEqual(entries.map((e) => e.fields.id), first.map((a) => a.id), 'exactly the events committed before the start');
    assert.ok(!entries.some((e) => later.some((l) => l.id === e.fields.id)));
  });

  test('max_per_second paces the job', async () => {
    const tag = 'pace' + h.rand(2);
    await pub(A, Array.from({ length: 1000 }, (_, i) => ({ type: `${tag}.item`, stream: 'prog.events', data: { i } })));
    const key = tgt('pace');
    const t0 = Date.now();
    const r = await startReplay(A, { filter: { type: `${tag}.item` }, target: { redis_stream: key }, max_per_second: 500 });
    const done = await waitFinished(A, r.id);
    const took = Date.now() - t0;
    assert.equal(done.status, 'done');
    assert.equal(await redisCmd('XLEN', key), 1000);
    assert.ok(took >= 900, `1,000 events at 500/s took ${took} ms (at least one paced page of 500)`);
  });

  test('DELETE cancels a running job: it stops, what was added stays; DELETE again and on a finished job changes nothing', async () => {
    const tag = 'cancel' + h.rand(2);
    for (let b = 0; b < 3; b++) await pub(A, Array.from({ length: 1000 }, (_, i) => ({ type: `${tag}.item`, stream: 'prog.events', data: { b, i } })));
    const key = tgt('cancel');
    const r = await startReplay(A, { filter: { type: `${tag}.item` }, target: { redis_stream: key }, max_per_second: 200 });
    await h.waitFor(async () => h.assertStatus(await A.get('/v1/replays/' + r.id), 200).replayed > 0, { timeout: DONE_MS, what: 'a first page' });
    const del = h.assertStatus(await A.del('/v1/replays/' + r.id), 200);
    assert.equal(del.id, r.id);
    assert.equal(del.status, 'cancelled');
    assert.ok(del.replayed < 3000);
    const len1 = await redisCmd('XLEN', key);
    await h.sleep(1500); // several paced pages (each a fifth of a second's worth)
    const len2 = await redisCmd('XLEN', key);
    assert.equal(len2, len1, 'nothing is added after the cancel');
    assert.ok(len2 >= 1 && len2 < 3000, `${len2} entries stay`);
    const again = h.assertStatus(await A.get('/v1/replays/' + r.id), 200);
    assert.equal(again.status, 'cancelled');
    assert.equal(h.assertStatus(await A.del('/v1/replays/' + r.id), 200).status, 'cancelled');
    // a finished job stays done
    const small = await startReplay(A, { filter: { key: 'k1', stream: 'orders.events' }, target: { redis_stream: tgt('small') } });
    await waitFinished(A, small.id);
    assert.equal(h.assertStatus(await A.del('/v1/replays/' + small.id), 200).status, 'done');
  });

  test('a target holding newer entries fails the job (as documented)', async () => {
    const key = tgt('newer');
    await redisCmd('XADD', key, '999999999999-0', 'x', 'y');
    const r = await startReplay(A, { filter: { stream: 'billing.events' }, target: { redis_stream: key } });
    const done = await waitFinished(A, r.id);
    assert.equal(done.status, 'failed', `a target with newer entries: ${JSON.stringify(done)}`);
    assert.equal(typeof done.error, 'string');
  });
});

// ---------------------------------------------------------------- validation, scopes, tenants

describe('validation, scopes and tenant isolation', () => {
  test('malformed requests: 400 invalid_request; bad JSON 400 invalid_json; wrong media type 415', async () => {
    const t = { redis_stream: tgt('bad') };
    const bad = [
      {}, { filter: {} }, { target: {} }, { target: { redis_stream: '' } }, { target: { redis_stream: 'has space' } },
      { target: { redis_stream: 5 } }, { target: 'x' },
      { target: t, max_per_second: 0 }, { target: t, max_per_second: -1 }, { target: t, max_per_second: 'fast' }, { target: t, max_per_second: 1.5 },
      { target: t, extra: 1 }, { target: t, filter: 'x' }, { target: t, filter: { bogus: 1 } },
      { target: t, filter: { type: 'Not A Type' } }, { target: t, filter: { types: ['ok.type', 5] } }, { target: t, filter: { since: 'yesterday' } },
      { target: t, filter: { from_position: -1 } }, { target: t, filter: { from_position: 'x' } }, { target: t, filter: { to_position: 1.5 } },
      { target: t, filter: { streams: 'a.b' } }, { target: t, filter: { key: '' } },
    ];
    for (const body of bad) h.assertProblem(await A.post('/v1/replays', body), 400, 'invalid_request');
    h.assertProblem(await A.request('POST', '/v1/replays', { body: '{"target":', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
    h.assertProblem(await A.request('POST', '/v1/replays', { body: 'x', headers: { 'Content-Type': 'text/plain' } }), 415, 'unsupported_media_type');
    assert.equal(await redisCmd('XLEN', t.redis_stream), 0);
  });

  test('404 for an unknown replay; 405 for other methods', async () => {
    h.assertProblem(await A.get('/v1/replays/rpl_01ARZ3NDEKTSV4RRFFQ69G5FAV'), 404, 'not_found');
    h.assertProblem(await A.del('/v1/replays/rpl_01ARZ3NDEKTSV4RRFFQ69G5FAV'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/replays/nonsense'), 404, 'not_found');
    const r = await A.request('PUT', '/v1/replays/rpl_01ARZ3NDEKTSV4RRFFQ69G5FAV', { json: {} });
    h.assertProblem(r, 405, 'method_not_allowed');
  });

  test('every route needs the admin scope (403), and a token (401)', async () => {
    const r = await startReplay(A, { filter: { key: 'k2' }, target: { redis_stream: tgt('scoped') } });
    const rw = s.client((await h.createKey(s, 'default', ['read', 'publish', 'subscribe'], 'rw')).token);
    h.assertProblem(await rw.post('/v1/replays', { target: { redis_stream: tgt('x') } }), 403, 'forbidden');
    h.assertProblem(await rw.get('/v1/replays/' + r.id), 403, 'forbidden');
    h.assertProblem(await rw.del('/v1/replays/' + r.id), 403, 'forbidden');
    h.assertProblem(await A.request('POST', '/v1/replays', { json: { target: { redis_stream: tgt('x') } }, token: null }), 401, 'unauthenticated');
    h.assertProblem(await A.get('/v1/replays/' + r.id, { token: null }), 401, 'unauthenticated');
    h.assertProblem(await A.del('/v1/replays/' + r.id, { token: null }), 401, 'unauthenticated');
  });

  test("tenant B neither sees nor cancels A's replays; B's replay holds only B's events", async () => {
    const tag = 'iso' + h.rand(2);
    await pub(A, Array.from({ length: 800 }, (_, i) => ({ type: `${tag}.item`, stream: 'orders.events', data: { i } })));
    const r = await startReplay(A, { filter: { type: `${tag}.item` }, target: { redis_stream: tgt('iso-a') }, max_per_second: 300 });
    h.assertProblem(await B.get('/v1/replays/' + r.id), 404, 'not_found');
    h.assertProblem(await B.del('/v1/replays/' + r.id), 404, 'not_found');
    const stillA = await waitFinished(A, r.id);
    assert.equal(stillA.status, 'done', "B's DELETE did not cancel A's job");
    assert.equal(stillA.replayed, 800);

    const bAll = await B.get('/v1/events', { headers: { Accept: 'application/x-ndjson' } });
    const bEvents = bAll.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const bKey = tgtB('iso-b');
    const rb = await startReplay(B, { filter: {}, target: { redis_stream: bKey } });
    assert.equal(rb.total, bEvents.length);
    const done = await waitFinished(B, rb.id);
    assert.equal(done.status, 'done');
    const entries = await xrangeAll(bKey);
    assert.deepEqual(entries.map((e) => e.fields.id), bEvents.map((e) => e.id));
    assert.ok(entries.every((e) => JSON.parse(e.fields.event).tenant_id === 'tenant-b'));
    h.assertProblem(await A.get('/v1/replays/' + rb.id), 404, 'not_found');
    // B's filter on A's correlation / key names selects B's events only
    const rc = await startReplay(B, { filter: { correlation_id: 'c2' }, target: { redis_stream: tgtB('iso-c') } });
    assert.equal(rc.total, bEvents.filter((e) => e.correlation_id === 'c2').length);
  });

  test("tenant B cannot write its events into tenant A's Redis streams", async () => {
    const ackA = (await pub(A, { type: 'order.placed', stream: 'orders.events', data: { mine: true } }))[0];
    const aStream = prefix + 'orders.events'; // A's relayed stream (tenant default)
    await h.waitFor(async () => {
      const top = await redisCmd('XREVRANGE', aStream, '+', '-', 'COUNT', 1);
      return top.length && Number(top[0][0].split('-')[0]) >= ackA.position;
    }, { timeout: 30000, what: "A's event relayed" });
    const bAcks = await pub(B, Array.from({ length: 5 }, (_, i) => ({ type: 'order.placed', stream: 'orders.events', data: { injected: i } })));
    const res = await B.post('/v1/replays', { filter: { from_position: bAcks[0].position - 1 }, target: { redis_stream: aStream } });
    if (res.status === 202) await waitFinished(B, res.body.id);
    else assert.ok(res.status === 400 || res.status === 403, h.describeRes(res));
    const entries = await xrangeAll(aStream);
    const foreign = entries.filter((e) => JSON.parse(e.fields.event).tenant_id !== 'default');
    assert.deepEqual(foreign.map((e) => e.fields.id), [], `tenant B's events in tenant A's stream ${aStream}`);
  });

  test("tenant default cannot write its events into tenant B's Redis streams either", async () => {
    const ackB = (await pub(B, { type: 'order.placed', stream: 'orders.events', data: { b: true } }))[0];
    const bStream = `${prefix}tenant-b:orders.events`; // B's relayed stream
    await h.waitFor(async () => {
      const top = await redisCmd('XREVRANGE', bStream, '+', '-', 'COUNT', 1);
      return top.length && Number(top[0][0].split('-')[0]) >= ackB.position;
    }, { timeout: 30000, what: "B's event relayed" });
    const aAcks = await pub(A, Array.from({ length: 5 }, (_, i) => ({ type: 'order.placed', stream: 'orders.events', data: { injected: i } })));
    const res = await A.post('/v1/replays', { filter: { from_position: aAcks[0].position - 1 }, target: { redis_stream: bStream } });
    if (res.status === 202) await waitFinished(A, res.body.id);
    else assert.ok(res.status === 400 || res.status === 403, h.describeRes(res));
    const entries = await xrangeAll(bStream);
    const foreign = entries.filter((e) => JSON.parse(e.fields.event).tenant_id !== 'tenant-b');
    assert.deepEqual(foreign.map((e) => e.fields.id), [], `tenant default's events in tenant B's stream ${bStream}`);
  });
});

// ---------------------------------------------------------------- a slow job

describe('a slow job (max_per_second: 1) holds up neither other jobs nor the shutdown', () => {
  let x;
  let c;
  let slow;
  let sprefix;
  before(async () => {
    sprefix = `itrs${h.rand(4)}:`;
    x = await h.startSluice({ name: 'replay-slow', keepDb: true, env: { SLUICE_REDIS_PREFIX: sprefix } });
    c = x.client();
    await pub(c, Array.from({ length: 600 }, (_, i) => ({ type: 'slow.item', stream: 'slow.events', key: 'k' + (i % 3), data: { i } })));
    slow = await startReplay(c, { filter: { type: 'slow.item' }, target: { redis_stream: `${sprefix}replay:slow` }, max_per_second: 1 });
    await h.waitFor(async () => h.assertStatus(await c.get('/v1/replays/' + slow.id), 200).replayed > 0, { timeout: DONE_MS, what: 'the first page' });
  });
  after(async () => {
    if (x) {
      await x.cleanup();
      x.db.drop();
    }
    if (sprefix) await deletePrefix(sprefix);
  });

  test('another job still runs and finishes', async () => {
    const fast = await startReplay(c, { filter: { key: 'k1' }, target: { redis_stream: `${sprefix}replay:fast` } });
    const done = await waitFinished(c, fast.id, 15000).catch((e) => e);
    assert.ok(!(done instanceof Error), `a small job waited behind a paced one: ${done}`);
    assert.equal(done.status, 'done');
    assert.equal(done.replayed, 200);
  });

  test('SIGTERM during the paced job: sluice exits 0 promptly; the job is still running, from its checkpoint', async () => {
    const t0 = Date.now();
    await x.stop({ timeout: 15000 });
    assert.ok(Date.now() - t0 < 15000);
    const row = h.psql(x.dbUrl, `SELECT status || ' ' || replayed FROM replays WHERE id = '${slow.id}'`);
    const [status, replayed] = row.split(' ');
    assert.equal(status, 'running', 'the job is still running after the restart point');
    assert.ok(Number(replayed) > 0, `its checkpoint survived (${row})`);
  });
});

// ---------------------------------------------------------------- kill -9 and resume

describe('a job survives kill -9 and resumes from its checkpoint', () => {
  let db;
  let kprefix;
  const cleanups = [];
  before(async () => {
    db = await h.freshDatabase();
    kprefix = `itrk${h.rand(4)}:`;
  });
  after(async () => {
    for (const f of cleanups.reverse()) await f();
    if (db) db.drop();
    if (kprefix) await deletePrefix(kprefix);
  });
  async function start(name) {
    const x = await h.startSluice({ name, dbUrl: db.url, env: { SLUICE_REDIS_PREFIX: kprefix } });
    cleanups.push(() => x.cleanup());
    return x;
  }

  test('kill -9 during a slow replay, restart on the same database: exactly the filtered range, no duplicates', async () => {
    const s1 = await start('replay-kill-1');
    const c1 = s1.client();
    const km = [];
    for (let b = 0; b < 4; b++) {
      const envs = Array.from({ length: 1000 }, (_, i) => ({ type: i % 3 === 0 ? 'kill.other' : 'kill.wanted', stream: 'kill.events', data: { b, i } }));
      const acks = await pub(c1, envs);
      envs.forEach((e, i) => km.push({ ...acks[i], type: e.type }));
    }
    const from = km[150].position;
    const to = km[3800].position;
    const want = km.filter((e) => e.type === 'kill.wanted' && e.position > from && e.position <= to);
    const key = `${kprefix}replay:kill`;
    const r = await startReplay(c1, { filter: { type: 'kill.wanted', from_position: from, to_position: to }, target: { redis_stream: key }, max_per_second: 200 });
    assert.equal(r.total, want.length);
    const mid = await h.waitFor(async () => {
      const x = h.assertStatus(await c1.get('/v1/replays/' + r.id), 200);
      return x.replayed >= 500 ? x : false;
    }, { timeout: DONE_MS, interval: 20, what: 'a first checkpoint' });
    await s1.kill9();
    const before9 = await redisCmd('XLEN', key);
    assert.ok(mid.status === 'running' && before9 < want.length, `killed mid-way (${before9} of ${want.length} added)`);
    // more events after the crash: not in the range
    const s2 = await start('replay-kill-2');
    const c2 = s2.client();
    await pub(c2, Array.from({ length: 20 }, (_, i) => ({ type: 'kill.wanted', stream: 'kill.events', data: { after: i } })));
    const done = await waitFinished(c2, r.id, 120000);
    assert.equal(done.status, 'done', JSON.stringify(done));
    assert.equal(done.position, to);
    await assertTarget(key, want, null, 'after the restart');
    assert.equal(done.replayed, want.length, 'replayed counts each event once');
    await s2.stop();
  });
});
