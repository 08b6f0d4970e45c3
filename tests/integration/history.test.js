'use strict';
// Issue 5: history — GET /v1/streams and /v1/streams/{stream} (counts, positions, last event
// time, the Redis stream's length and consumer groups, retention), one entity's history
// (/v1/streams/{stream}/keys/{key}, version order, paged), one flow's trace
// (/v1/correlations/{id}), PUT /v1/streams/{stream} retention and its enforcement by the
// leader (older events deleted, the newest event of the whole log never), scopes, and tenant
// isolation of every route. Checked against a model of a randomised sequence of publishes
// (seed: SLUICE_IT_SEED, printed on failure).
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const redis = require('../lib/redis.js');

const SEED = Number(process.env.SLUICE_IT_SEED || Date.now() % 1000000);

// ---------------------------------------------------------------- a seeded PRNG (mulberry32)

function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), pick: (xs) => xs[Math.floor(next() * xs.length)] };
}

// ---------------------------------------------------------------- Redis

// One command on a connection of its own, to the suite's Redis (tests/lib/redis.js).
const redisCmd = (...args) => redis.command(process.env.SLUICE_REDIS_URL, args);

const deletePrefix = (prefix) => redis.deletePrefix(process.env.SLUICE_REDIS_URL, prefix);

// ---------------------------------------------------------------- helpers

async function pub(client, envs) {
  const res = await client.publish(envs);
  h.assertStatus(res, 201);
  return Array.isArray(envs) ? res.body.events : [res.body];
}

// Every page of GET <path>?limit=N&after=…; checks the paging fields on the way.
async function allPages(client, path, limit) {
  const events = [];
  let after;
  for (let pages = 0; ; pages++) {
    const q = new URLSearchParams();
    if (limit) q.set('limit', String(limit));
    if (after !== undefined) q.set('after', String(after));
    const res = h.assertStatus(await client.get(path + (String(q) ? '?' + q : '')), 200);
    assert.ok(Array.isArray(res.events), `${path}: events[]`);
    assert.equal(typeof res.has_more, 'boolean');
    if (limit) assert.ok(res.events.length <= limit);
    events.push(...res.events);
    if (res.events.length) assert.equal(res.next_after, res.events[res.events.length - 1].position, 'next_after = last position');
    if (!res.has_more) return events;
    assert.ok(res.events.length > 0, 'has_more with an empty page');
    after = res.next_after;
    assert.ok(pages < 10000, 'paging terminates');
  }
}

const enc = encodeURIComponent;

function streamStats(model, stream) {
  const evs = model.filter((e) => e.stream === stream);
  const times = evs.map((e) => Date.parse(e.time));
  return {
    stream,
    event_count: evs.length,
    first_position: evs.length ? Math.min(...evs.map((e) => e.position)) : null,
    last_position: evs.length ? Math.max(...evs.map((e) => e.position)) : null,
    last_event_time: evs.length ? new Date(Math.max(...times)).toISOString() : null,
  };
}

// ---------------------------------------------------------------- the shared instance

let s;
let A;        // tenant default, admin
let B;        // tenant-b: read, publish, admin
let Bread;    // tenant-b: read only
let prefix;
const model = [];  // tenant default: {id, position, stream, key, version, type, correlation_id, time}
const modelB = [];
const STREAMS = ['orders.events', 'billing.events', 'audit.trail', 'ai.events'];
const KEYS = ['ord-1', 'ord-2', 'ord-3', 'k ü%+', 'x'];
const CORRS = ['saga-1', 'saga-2', 'saga-3'];

function record(into, env, ack) {
  into.push({ id: ack.id, position: ack.position, stream: ack.stream, key: ack.key, version: ack.version,
    type: env.type, correlation_id: env.correlation_id ?? ack.id, time: ack.time });
}

before(async () => {
  prefix = `ith${h.rand(4)}:`;
  s = await h.startSluice({ name: 'history', env: { SLUICE_REDIS_PREFIX: prefix } });
  A = s.client();
  B = s.client((await h.createKey(s, 'tenant-b', ['read', 'publish', 'admin'], 'b')).token);
  Bread = s.client((await h.createKey(s, 'tenant-b', ['read'], 'b-read')).token);

  // A randomised sequence: singles and batches, streams, keys (versions), correlations.
  const rnd = prng(SEED);
  let n = 0;
  while (n < 400) {
    const size = rnd.next() < 0.4 ? 1 : 1 + rnd.int(25);
    const envs = [];
    for (let j = 0; j < size; j++, n++) {
      const e = { id: `h-${n}`, type: rnd.pick(['order.placed', 'order.paid', 'invoice.sent', 'ai.cost', 'audit.logged']),
        stream: rnd.pick(STREAMS), data: { n } };
      if (rnd.next() < 0.7) e.key = rnd.pick(KEYS);
      if (rnd.next() < 0.6) e.correlation_id = rnd.pick(CORRS);
      envs.push(e);
    }
    const acks = await pub(A, size === 1 ? envs[0] : envs);
    envs.forEach((e, j) => record(model, e, acks[j]));
  }
  // Tenant B uses the same stream, key and correlation names.
  for (let i = 0; i < 30; i++) {
    const e = { id: `hb-${i}`, type: 'order.placed', stream: i % 2 ? 'orders.events' : 'b.only', key: 'ord-1', correlation_id: 'saga-1', data: { i } };
    record(modelB, e, (await pub(B, e))[0]);
  }
});

after(async () => {
  if (s) await s.stop().finally(() => s.cleanup());
  if (prefix) await deletePrefix(prefix);
});

// ---------------------------------------------------------------- streams

describe('GET /v1/streams', () => {
  test(`lists the tenant's streams sorted by name, with count, positions and last event time (seed ${SEED})`, async () => {
    const res = h.assertStatus(await A.get('/v1/streams'), 200);
    assert.ok(Array.isArray(res.streams));
    const names = [...new Set(model.map((e) => e.stream))].sort();
    assert.deepEqual(res.streams.map((x) => x.stream), names, 'exactly the streams of tenant default, by name');
    for (const st of res.streams) {
      const want = streamStats(model, st.stream);
      assert.deepEqual({ stream: st.stream, event_count: st.event_count, first_position: st.first_position,
        last_position: st.last_position, last_event_time: st.last_event_time }, want, st.stream);
      assert.match(st.last_event_time, h.TIME_RE);
      assert.deepEqual(st.retention, { max_age_ms: null }, 'retention defaults to forever');
    }
  });

  test("tenant B sees only its own streams, with its own counts", async () => {
    const res = h.assertStatus(await Bread.get('/v1/streams'), 200);
    assert.deepEqual(res.streams.map((x) => x.stream), ['b.only', 'orders.events']);
    for (const st of res.streams) {
      const want = streamStats(modelB, st.stream);
      assert.equal(st.event_count, want.event_count, st.stream);
      assert.equal(st.first_position, want.first_position);
      assert.equal(st.last_position, want.last_position);
    }
  });

  test('401 without a token, 403 without the read scope', async () => {
    h.assertProblem(await A.get('/v1/streams', { token: null }), 401, 'unauthenticated');
    const pubOnly = s.client((await h.createKey(s, 'default', ['publish'], 'p')).token);
    h.assertProblem(await pubOnly.get('/v1/streams'), 403, 'forbidden');
    h.assertProblem(await pubOnly.get('/v1/streams/orders.events'), 403, 'forbidden');
    h.assertProblem(await pubOnly.get('/v1/streams/orders.events/keys/ord-1'), 403, 'forbidden');
    h.assertProblem(await pubOnly.get('/v1/correlations/saga-1'), 403, 'forbidden');
  });
});

describe('GET /v1/streams/{stream}', () => {
  test('one stream: the same figures as the list, plus its Redis stream (name, length once relayed, groups)', async () => {
    for (const name of STREAMS) {
      const want = streamStats(model, name);
      if (!want.event_count) continue;
      const one = await h.waitFor(async () => {
        const r = h.assertStatus(await A.get('/v1/streams/' + name), 200);
        return r.redis && r.redis.length === want.event_count ? r : false;
      }, { timeout: 30000, what: `${name}: redis.length = ${want.event_count}` });
      assert.equal(one.stream, name);
      assert.equal(one.event_count, want.event_count);
      assert.equal(one.first_position, want.first_position);
      assert.equal(one.last_position, want.last_position);
      assert.equal(one.last_event_time, want.last_event_time);
      assert.deepEqual(one.retention, { max_age_ms: null });
      assert.equal(one.redis.name, prefix + name, 'tenant default: <prefix><stream>');
      assert.deepEqual(one.redis.groups, []);
      assert.equal(await redisCmd('XLEN', prefix + name), want.event_count);
    }
  });

  test('consumer groups of the Redis stream are listed', async () => {
    await redisCmd('XGROUP', 'CREATE', prefix + 'orders.events', 'billing-workers', '0');
    await redisCmd('XGROUP', 'CREATE', prefix + 'orders.events', 'audit', '$');
    const one = h.assertStatus(await A.get('/v1/streams/orders.events'), 200);
    assert.deepEqual(one.redis.groups.map((g) => g.name).sort(), ['audit', 'billing-workers']);
    const g = one.redis.groups.find((x) => x.name === 'billing-workers');
    assert.equal(g.pending, 0);
    assert.equal(g.consumers, 0);
  });

  test("tenant B's stream of the same name is its own, in Redis under <prefix><tenant>:<stream>", async () => {
    const want = streamStats(modelB, 'orders.events');
    const one = await h.waitFor(async () => {
      const r = h.assertStatus(await Bread.get('/v1/streams/orders.events'), 200);
      return r.redis && r.redis.length === want.event_count ? r : false;
    }, { timeout: 30000, what: 'tenant-b orders.events relayed' });
    assert.equal(one.event_count, want.event_count);
    assert.equal(one.last_position, want.last_position);
    assert.equal(one.redis.name, `${prefix}tenant-b:orders.events`);
    assert.deepEqual(one.redis.groups, [], "tenant default's groups are not tenant B's");
  });

  test("a stream name may not hold ':' (it separates a tenant's Redis namespace), so no two tenants share a Redis stream", async () => {
    // tenant-b's 'orders.events' is relayed to <prefix>tenant-b:orders.events; tenant default
    // naming a stream 'tenant-b:orders.events' would land in it, so the name is refused.
    const res = await A.post('/v1/events', { type: 'order.placed', stream: 'tenant-b:orders.events', data: {} });
    h.assertProblem(res, 400, 'invalid_envelope');
    assert.ok(res.body.errors.some((e) => e.path === '/stream'), JSON.stringify(res.body.errors));
    const theirs = h.assertStatus(await Bread.get('/v1/streams/orders.events'), 200);
    const entries = await redisCmd('XRANGE', theirs.redis.name, '-', '+');
    const foreign = entries.map(([, kv]) => JSON.parse(kv[kv.indexOf('event') + 1])).filter((e) => e.tenant_id !== 'tenant-b');
    assert.deepEqual(foreign.map((e) => e.id), [], `foreign events in tenant-b's Redis stream ${theirs.redis.name}`);
  });

  test("404 not_found for a stream with no events, for another tenant's stream, and for a malformed name", async () => {
    h.assertProblem(await A.get('/v1/streams/no.such.stream'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/streams/b.only'), 404, 'not_found');
    h.assertProblem(await Bread.get('/v1/streams/billing.events'), 404, 'not_found');
    h.assertProblem(await A.get('/v1/streams/' + enc('bad name!')), 404, 'not_found');
  });
});

// ---------------------------------------------------------------- entity history

describe('GET /v1/streams/{stream}/keys/{key}', () => {
  test('each (stream, key): exactly its events, versions 1..n in order, one page and pages of 3', async () => {
    let checked = 0;
    for (const stream of STREAMS) {
      for (const key of KEYS) {
        const want = model.filter((e) => e.stream === stream && e.key === key);
        const res = h.assertStatus(await A.get(`/v1/streams/${stream}/keys/${enc(key)}`), 200);
        assert.equal(res.has_more, false);
        assert.deepEqual(res.events.map((e) => e.id), want.map((e) => e.id), `${stream}/${key}`);
        assert.deepEqual(res.events.map((e) => e.version), want.map((_, i) => i + 1), `${stream}/${key}: versions 1..n`);
        for (const e of res.events) {
          assert.equal(e.stream, stream);
          assert.equal(e.key, key);
          assert.equal(e.tenant_id, 'default');
        }
        const paged = await allPages(A, `/v1/streams/${stream}/keys/${enc(key)}`, 3);
        assert.deepEqual(paged.map((e) => e.id), want.map((e) => e.id), `${stream}/${key} in pages of 3`);
        checked += want.length ? 1 : 0;
      }
    }
    assert.ok(checked >= 10, 'the random sequence produced enough entities');
  });

  test('the representation equals GET /v1/events/{id}', async () => {
    const m = model.find((e) => e.key === 'ord-2');
    const res = h.assertStatus(await A.get(`/v1/streams/${m.stream}/keys/ord-2`), 200);
    const one = h.assertStatus(await A.get('/v1/events/' + m.id), 200);
    assert.deepEqual(res.events.find((e) => e.id === m.id), one);
  });

  test('limit defaults to 1000 (a whole entity at once), has_more and next_after page on', async () => {
    const key = 'big-' + h.rand(3);
    const envs = (n, off) => Array.from({ length: n }, (_, i) => ({ type: 'order.line.added', stream: 'orders.events', key, data: { i: i + off } }));
    const acks = [...await pub(A, envs(1000, 0)), ...await pub(A, envs(50, 1000))];
    acks.forEach((a, i) => model.push({ id: a.id, position: a.position, stream: a.stream, key, version: a.version, type: 'order.line.added', correlation_id: a.id, time: a.time }));
    const first = h.assertStatus(await A.get(`/v1/streams/orders.events/keys/${key}`), 200);
    assert.equal(first.events.length, 1000);
    assert.equal(first.has_more, true);
    assert.equal(first.next_after, acks[999].position);
    const second = h.assertStatus(await A.get(`/v1/streams/orders.events/keys/${key}?after=${first.next_after}`), 200);
    assert.equal(second.events.length, 50);
    assert.equal(second.has_more, false);
    assert.deepEqual([...first.events, ...second.events].map((e) => e.version), acks.map((_, i) => i + 1));
  });

  test('an unknown key or stream is an empty page; bad paging parameters are 400 invalid_query', async () => {
    for (const p of ['/v1/streams/orders.events/keys/nobody', '/v1/streams/no.such/keys/ord-1']) {
      const res = h.assertStatus(await A.get(p), 200);
      assert.deepEqual(res.events, []);
      assert.equal(res.has_more, false);
    }
    for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'after=-1', 'after=x']) {
      h.assertProblem(await A.get('/v1/streams/orders.events/keys/ord-1?' + q), 400, 'invalid_query');
    }
  });

  test('a key containing "/" is addressable percent-encoded (keys are any string up to 256 characters)', async () => {
    const key = `tenant/${h.rand(2)}/order 7`;
    const acks = await pub(A, [{ type: 'order.placed', stream: 'orders.events', key, data: {} },
      { type: 'order.paid', stream: 'orders.events', key, data: {} }]);
    const res = await A.get(`/v1/streams/orders.events/keys/${enc(key)}`);
    h.assertStatus(res, 200);
    assert.deepEqual(res.body.events.map((e) => e.id), acks.map((a) => a.id));
  });

  test("tenant isolation: B reading A's entity sees only B's events of the same (stream, key)", async () => {
    const wantB = modelB.filter((e) => e.stream === 'orders.events' && e.key === 'ord-1').map((e) => e.id);
    const res = h.assertStatus(await Bread.get('/v1/streams/orders.events/keys/ord-1'), 200);
    assert.deepEqual(res.events.map((e) => e.id), wantB);
    assert.ok(res.events.every((e) => e.tenant_id === 'tenant-b'));
    const none = h.assertStatus(await Bread.get('/v1/streams/billing.events/keys/ord-1'), 200);
    assert.deepEqual(none.events, []);
  });
});

// ---------------------------------------------------------------- correlations

describe('GET /v1/correlations/{correlation_id}', () => {
  test('every event of one flow, across streams, in position order; pages of 4 agree', async () => {
    for (const corr of CORRS) {
      const want = model.filter((e) => e.correlation_id === corr).sort((a, b) => a.position - b.position).map((e) => e.id);
      assert.ok(want.length > 5, `${corr} has events`);
      const res = h.assertStatus(await A.get('/v1/correlations/' + corr), 200);
      assert.deepEqual(res.events.map((e) => e.id), want, corr);
      assert.equal(res.has_more, false);
      assert.ok(res.events.every((e) => e.correlation_id === corr && e.tenant_id === 'default'));
      const paged = await allPages(A, '/v1/correlations/' + corr, 4);
      assert.deepEqual(paged.map((e) => e.id), want, `${corr} in pages of 4`);
    }
  });

  test('a request/response saga: the whole flow in order, including an event whose correlation_id defaulted to its id', async () => {
    const start = (await pub(A, { type: 'ai.consultation.requested.x', stream: 'ai.events', data: { q: 1 } }))[0];
    const flow = [start.id];
    for (const [type, stream] of [['ai.routing.decided', 'ai.events'], ['billing.charged', 'billing.events'], ['ai.consultation.completed.x', 'ai.events']]) {
      const ack = (await pub(A, { type, stream, correlation_id: start.id, causation_id: flow[flow.length - 1], data: {} }))[0];
      flow.push(ack.id);
      await pub(A, { type: 'noise.event', stream, data: {} }); // unrelated, interleaved
    }
    const res = h.assertStatus(await A.get('/v1/correlations/' + start.id), 200);
    assert.deepEqual(res.events.map((e) => e.id), flow);
    assert.deepEqual(res.events.slice(1).map((e) => e.causation_id), flow.slice(0, -1), 'causation chain');
  });

  test('percent-encoded ids with spaces and non-ASCII characters; an unknown id is an empty page', async () => {
    const corr = `corr ü+${h.rand(2)}%`;
    const acks = await pub(A, [{ type: 'x.y', stream: 'ai.events', correlation_id: corr, data: {} }, { type: 'x.z', stream: 'audit.trail', correlation_id: corr, data: {} }]);
    const res = h.assertStatus(await A.get('/v1/correlations/' + enc(corr)), 200);
    assert.deepEqual(res.events.map((e) => e.id), acks.map((a) => a.id));
    const none = h.assertStatus(await A.get('/v1/correlations/no-such-flow'), 200);
    assert.deepEqual(none.events, []);
    assert.equal(none.has_more, false);
  });

  test('a correlation id containing "/" is addressable percent-encoded', async () => {
    const corr = `orders/${h.rand(2)}`;
    const ack = (await pub(A, { type: 'x.y', stream: 'ai.events', correlation_id: corr, data: {} }))[0];
    const res = await A.get('/v1/correlations/' + enc(corr));
    h.assertStatus(res, 200);
    assert.deepEqual(res.body.events.map((e) => e.id), [ack.id]);
  });

  test('limit defaults to 1000; bad paging parameters are 400 invalid_query', async () => {
    const corr = 'bulk-' + h.rand(3);
    await pub(A, Array.from({ length: 1000 }, (_, i) => ({ type: 'bulk.item', stream: 'audit.trail', correlation_id: corr, data: { i } })));
    await pub(A, Array.from({ length: 3 }, (_, i) => ({ type: 'bulk.item', stream: 'orders.events', correlation_id: corr, data: { i } })));
    const res = h.assertStatus(await A.get('/v1/correlations/' + corr), 200);
    assert.equal(res.events.length, 1000);
    assert.equal(res.has_more, true);
    const rest = h.assertStatus(await A.get(`/v1/correlations/${corr}?after=${res.next_after}`), 200);
    assert.equal(rest.events.length, 3);
    for (const q of ['limit=0', 'limit=1001', 'after=-5']) {
      h.assertProblem(await A.get(`/v1/correlations/${corr}?${q}`), 400, 'invalid_query');
    }
  });

  test("tenant isolation: B's trace of saga-1 holds only B's events", async () => {
    const res = h.assertStatus(await Bread.get('/v1/correlations/saga-1'), 200);
    assert.deepEqual(res.events.map((e) => e.id), modelB.map((e) => e.id));
    const none = h.assertStatus(await Bread.get('/v1/correlations/saga-2'), 200);
    assert.deepEqual(none.events, []);
  });
});

// ---------------------------------------------------------------- retention settings

describe('PUT /v1/streams/{stream}', () => {
  test('sets and clears max_age_ms; the setting shows in the list and in the stream', async () => {
    const put = await A.request('PUT', '/v1/streams/billing.events', { json: { retention: { max_age_ms: 86400000 } } });
    assert.deepEqual(h.assertStatus(put, 200), { stream: 'billing.events', retention: { max_age_ms: 86400000 } });
    assert.deepEqual(h.assertStatus(await A.get('/v1/streams/billing.events'), 200).retention, { max_age_ms: 86400000 });
    const list = h.assertStatus(await A.get('/v1/streams'), 200).streams;
    assert.deepEqual(list.find((x) => x.stream === 'billing.events').retention, { max_age_ms: 86400000 });
    assert.deepEqual(list.find((x) => x.stream === 'orders.events').retention, { max_age_ms: null });
    // B's stream of the same name is untouched; B's own setting does not touch A's
    assert.deepEqual(h.assertStatus(await Bread.get('/v1/streams/orders.events'), 200).retention, { max_age_ms: null });
    h.assertStatus(await B.request('PUT', '/v1/streams/orders.events', { json: { retention: { max_age_ms: 5000000 } } }), 200);
    assert.deepEqual(h.assertStatus(await A.get('/v1/streams/orders.events'), 200).retention, { max_age_ms: null });
    assert.deepEqual(h.assertStatus(await Bread.get('/v1/streams/orders.events'), 200).retention, { max_age_ms: 5000000 });
    h.assertStatus(await B.request('PUT', '/v1/streams/orders.events', { json: { retention: { max_age_ms: null } } }), 200);

    const clear = await A.request('PUT', '/v1/streams/billing.events', { json: { retention: { max_age_ms: null } } });
    assert.deepEqual(h.assertStatus(clear, 200), { stream: 'billing.events', retention: { max_age_ms: null } });
    assert.deepEqual(h.assertStatus(await A.get('/v1/streams/billing.events'), 200).retention, { max_age_ms: null });
  });

  test('malformed settings are 400 invalid_request; wrong media type 415; bad JSON 400 invalid_json', async () => {
    for (const body of [{}, { retention: {} }, { retention: { max_age_ms: 0 } }, { retention: { max_age_ms: -5 } },
      { retention: { max_age_ms: '1000' } }, { retention: { max_age_ms: 1.5 } }, { retention: 1000 },
      { retention: { max_age_ms: 1000, extra: 1 } }, { retention: { max_age_ms: 1000 }, other: true }, [1]]) {
      h.assertProblem(await A.request('PUT', '/v1/streams/billing.events', { json: body }), 400, 'invalid_request');
    }
    h.assertProblem(await A.request('PUT', '/v1/streams/billing.events', { body: '{"retention":', headers: { 'Content-Type': 'application/json' } }), 400, 'invalid_json');
    h.assertProblem(await A.request('PUT', '/v1/streams/billing.events', { body: 'x', headers: { 'Content-Type': 'text/plain' } }), 415, 'unsupported_media_type');
    h.assertProblem(await A.request('PUT', '/v1/streams/' + enc('bad name!'), { json: { retention: { max_age_ms: 1 } } }), 400, 'invalid_request');
    assert.deepEqual(h.assertStatus(await A.get('/v1/streams/billing.events'), 200).retention, { max_age_ms: null }, 'nothing changed');
  });

  test('needs the admin scope (403 for a read/publish key, 401 without a token)', async () => {
    const rw = s.client((await h.createKey(s, 'default', ['read', 'publish'], 'rw')).token);
    h.assertProblem(await rw.request('PUT', '/v1/streams/billing.events', { json: { retention: { max_age_ms: 1000 } } }), 403, 'forbidden');
    h.assertProblem(await A.request('PUT', '/v1/streams/billing.events', { json: { retention: { max_age_ms: 1000 } }, token: null }), 401, 'unauthenticated');
    h.assertProblem(await Bread.request('PUT', '/v1/streams/orders.events', { json: { retention: { max_age_ms: 1000 } } }), 403, 'forbidden');
    assert.deepEqual(h.assertStatus(await A.get('/v1/streams/billing.events'), 200).retention, { max_age_ms: null });
  });

  test('other methods on the stream routes are 405 with Allow', async () => {
    const r = await A.del('/v1/streams/billing.events');
    h.assertProblem(r, 405, 'method_not_allowed');
    assert.match(r.headers.get('allow') || '', /GET/);
    h.assertProblem(await A.post('/v1/streams', {}), 405, 'method_not_allowed');
    h.assertProblem(await A.post('/v1/correlations/saga-1', {}), 405, 'method_not_allowed');
  });
});

// ---------------------------------------------------------------- retention enforcement

describe('retention enforcement (own instance, so "the newest event of the log" is known)', () => {
  let r;
  let ra;
  let rb;
  let rprefix;
  before(async () => {
    rprefix = `itr${h.rand(4)}:`;
    r = await h.startSluice({ name: 'retention', env: { SLUICE_REDIS_PREFIX: rprefix } });
    ra = r.client();
    rb = r.client((await h.createKey(r, 'tenant-b', ['read', 'publish', 'admin'], 'b')).token);
  });
  after(async () => {
    if (r) await r.stop().finally(() => r.cleanup());
    if (rprefix) await deletePrefix(rprefix);
  });

  // Ages the given positions by `ms` (as if published that long ago).
  const age = (positions, ms) => h.psql(r.dbUrl, `UPDATE events SET time = time - interval '${ms} milliseconds' WHERE position IN (${positions.join(',')})`);
  const positionsOf = (acks) => acks.map((a) => a.position);

  test('expired events of that stream and tenant are deleted in the background; everything else stays', async () => {
    const keep = await pub(ra, Array.from({ length: 30 }, (_, i) => ({ type: 'keep.me', stream: 'keep.events', key: 'k', data: { i } })));
    const bOld = await pub(rb, Array.from({ length: 20 }, (_, i) => ({ type: 'audit.logged', stream: 'audit.trail', data: { i } })));
    const oldEnv = (off) => Array.from({ length: 750 }, (_, i) => ({ type: 'audit.logged', stream: 'audit.trail', key: 'acct-1', data: { i: i + off, pad: 'p'.repeat(50) } }));
    const old = [...await pub(ra, oldEnv(0)), ...await pub(ra, oldEnv(750))];
    const fresh = await pub(ra, Array.from({ length: 10 }, (_, i) => ({ type: 'audit.logged', stream: 'audit.trail', key: 'acct-1', data: { i, fresh: true } })));
    age([...positionsOf(keep), ...positionsOf(bOld), ...positionsOf(old)], 3600 * 1000);

    const put = await ra.request('PUT', '/v1/streams/audit.trail', { json: { retention: { max_age_ms: 600000 } } });
    h.assertStatus(put, 200);
    // 1,500 expired events: more than one batch of 1,000.
    const info = await h.waitFor(async () => {
      const x = h.assertStatus(await ra.get('/v1/streams/audit.trail'), 200);
      return x.event_count === fresh.length ? x : false;
    }, { timeout: 30000, interval: 200, what: 'the expired audit.trail events to be deleted' });
    assert.equal(info.first_position, fresh[0].position);
    assert.equal(info.last_position, fresh[fresh.length - 1].position);
    assert.deepEqual(info.retention, { max_age_ms: 600000 });

    const left = await h.readAllPages(ra, { stream: 'audit.trail' }, { limit: 1000 });
    assert.deepEqual(left.events.map((e) => e.id), fresh.map((a) => a.id), 'exactly the fresh events remain');
    h.assertProblem(await ra.get('/v1/events/' + old[0].id), 404, 'not_found');
    const hist = h.assertStatus(await ra.get('/v1/streams/audit.trail/keys/acct-1'), 200);
    assert.deepEqual(hist.events.map((e) => e.version), fresh.map((a) => a.version), 'the entity keeps its later versions');

    assert.equal(h.assertStatus(await ra.get('/v1/streams/keep.events'), 200).event_count, 30, 'a stream without retention keeps old events');
    assert.equal(h.assertStatus(await rb.get('/v1/streams/audit.trail'), 200).event_count, 20, "tenant B's stream of the same name keeps its events");
    // Redis keeps its own MAXLEN trimming: the relayed entries stay.
    await h.waitFor(async () => (await redisCmd('XLEN', rprefix + 'audit.trail')) === old.length + fresh.length,
      { timeout: 30000, what: 'Redis keeps the relayed entries' });
  });

  test('the newest event of the whole log is never deleted, even when expired; it goes once a newer one exists', async () => {
    const last = (await pub(ra, { type: 'short.lived', stream: 'short.events', data: {} }))[0];
    age([last.position], 3600 * 1000);
    h.assertStatus(await ra.request('PUT', '/v1/streams/short.events', { json: { retention: { max_age_ms: 1 } } }), 200);
    await h.sleep(5000); // two enforcement rounds (every ~2 s)
    const ev = await ra.get('/v1/events/' + last.id);
    assert.equal(ev.status, 200, `the newest event of the log was deleted: ${h.describeRes(ev)}`);
    const info = h.assertStatus(await ra.get('/v1/streams/short.events'), 200);
    assert.equal(info.event_count, 1);

    const next = (await pub(ra, { type: 'keep.me', stream: 'keep.events', data: {} }))[0];
    await h.waitFor(async () => (await ra.get('/v1/events/' + last.id)).status === 404,
      { timeout: 20000, interval: 200, what: 'the expired event to go once it is not the newest' });
    assert.ok(next.position > last.position);
    const again = (await pub(ra, { type: 'after.retention', stream: 'keep.events', data: {} }))[0];
    assert.equal(again.position, next.position + 1, 'positions keep increasing');
  });

  test('max_age_ms null stops the deletion', async () => {
    h.assertStatus(await ra.request('PUT', '/v1/streams/audit.trail', { json: { retention: { max_age_ms: null } } }), 200);
    const remaining = (await h.readAllPages(ra, { stream: 'audit.trail' }, { limit: 1000 })).events;
    assert.equal(remaining.length, 10);
    await pub(ra, { type: 'keep.me', stream: 'keep.events', data: {} }); // they are not the newest
    age(remaining.map((e) => e.position), 3600 * 1000);
    await h.sleep(5000);
    assert.equal(h.assertStatus(await ra.get('/v1/streams/audit.trail'), 200).event_count, 10);
  });
});
