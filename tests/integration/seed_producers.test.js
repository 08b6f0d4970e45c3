'use strict';
// Issue 15: seed producers served as they are. A body in the shape of seed 000's BaseEvent
// (cai-service's EventFactory.createEvent: id, type, payload, timestamp, version, source,
// correlationId, metadata) is accepted on POST /v1/events, single or in a batch, and stored as
// the envelope it maps to; the producer's occurrence time (BaseEvent `timestamp`, CloudEvents
// `time`, or an envelope's own `occurred_at`) is kept as `occurred_at` beside Sluice's
// ingestion `time`, in every stored envelope a reader gets (GET one, pages, NDJSON, the
// WebSocket live and from history, SSE, the Redis stream); `source` defaults to the name of
// the publishing API key. Idempotency treats all of it as content.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const h = require('./lib/harness');
const { withRedis, xrangeAll, deletePrefix } = require('../lib/redis.js');

const WAIT_MS = 20000; // "no hang" bound for a delivery, never a timing assertion
const PREFIX = `seed${h.rand(4)}:`;

let s;
let c;
before(async () => {
  s = await h.startSluice({ name: 'seed-producers', env: { SLUICE_REDIS_PREFIX: PREFIX } });
  c = s.client();
});
after(async () => {
  try {
    if (s) await s.stop().finally(() => s.cleanup());
  } finally {
    if (process.env.SLUICE_REDIS_URL) await deletePrefix(process.env.SLUICE_REDIS_URL, PREFIX).catch(() => {});
  }
});

// What EventFactory.createEvent(EventType.S3_OBJECT_CREATED, payload, {userId, tenantId})
// makes in seed 000, plus the causationId its EventMetadata allows.
function seedEvent(extra = {}) {
  const correlationId = 'corr-' + h.rand(4);
  return {
    id: crypto.randomUUID(),
    type: 's3.object.created',
    payload: { bucket: 'knowledge-documents', key: 'uploads/document.pdf', size: 1024000, contentType: 'application/pdf' },
    timestamp: '2024-03-01T09:30:00.125Z',
    version: '1.0',
    source: 'cai-service',
    correlationId,
    metadata: { correlationId, causationId: 'cause-' + h.rand(3), userId: 'user-123', tenantId: 'tenant-456', createdAt: 1709285400125 },
    ...extra,
  };
}

// The stored envelope a BaseEvent maps to (the fields Sluice does not assign).
function assertMapped(ev, be, what) {
  const txt = `${what}: ${JSON.stringify(ev)}`;
  assert.equal(ev.id, be.id, txt);
  assert.equal(ev.type, be.type, txt);
  assert.deepEqual(ev.data, be.payload, `payload → data: ${txt}`);
  assert.equal(ev.occurred_at, be.timestamp, `timestamp → occurred_at: ${txt}`);
  assert.match(ev.time, h.TIME_RE, txt);
  assert.notEqual(ev.time, ev.occurred_at, `time stays the ingestion time: ${txt}`);
  assert.equal(ev.source, be.source, txt);
  assert.equal(ev.correlation_id, be.correlationId, `correlationId → correlation_id: ${txt}`);
  assert.equal(ev.causation_id, be.metadata.causationId, `metadata.causationId → causation_id: ${txt}`);
  assert.equal(ev.user_id, be.metadata.userId, `metadata.userId → user_id: ${txt}`);
  assert.deepEqual(ev.metadata, { ...be.metadata, envelope_version: be.version }, `metadata kept whole, version in it: ${txt}`);
  assert.equal(ev.tenant_id, 'default', `the key's tenant, not metadata.tenantId: ${txt}`);
  assert.equal(ev.stream, 's3.events', `the type's registered stream: ${txt}`);
  assert.equal(ev.key, null, txt);
  assert.equal(ev.version, null, `no key, no per-key version: ${txt}`);
  assert.equal(ev.schema_version, 1, `validated against the catalog's s3.object.created: ${txt}`);
}

async function stored(id) {
  return h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(id)), 200);
}

function errorAt(problem, path, keyword) {
  const hit = (problem.errors || []).find((e) => e.path === path && (!keyword || e.keyword === keyword));
  assert.ok(hit, `an error at ${path}${keyword ? ' (' + keyword + ')' : ''}: ${JSON.stringify(problem)}`);
  return hit;
}

describe('a seed 000 BaseEvent on POST /v1/events', () => {
  test('201, stored as the envelope it maps to, read back the same by id, by page and as NDJSON', async () => {
    const be = seedEvent();
    const res = await c.publish(be);
    h.assertStatus(res, 201);
    assert.equal(res.body.id, be.id, 'the BaseEvent keeps its id');
    assert.equal(res.body.stream, 's3.events');
    const ev = await stored(be.id);
    assertMapped(ev, be, 'GET /v1/events/{id}');
    assert.equal(ev.position, res.body.position);
    assert.equal(ev.time, res.body.time);

    const page = h.assertStatus(await c.get(`/v1/events?correlation_id=${be.correlationId}`), 200);
    assert.equal(page.events.length, 1, JSON.stringify(page));
    assert.deepEqual(page.events[0], ev, 'a page holds the same stored envelope');

    const nd = await c.get(`/v1/events?correlation_id=${be.correlationId}`, { headers: { Accept: 'application/x-ndjson' } });
    h.assertStatus(nd, 200);
    const lines = nd.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.deepEqual(lines, [ev], 'NDJSON holds the same stored envelope');
  });

  test('an identical re-send is an idempotent replay; other content under the same id is 409 duplicate_id', async () => {
    const be = seedEvent();
    const first = h.assertStatus(await c.publish(be), 201);
    const again = await c.publish(structuredClone(be));
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true');
    assert.deepEqual(again.body, first, 'the original answer');

    const changes = {
      payload: { ...be.payload, size: 1 },
      timestamp: '2024-03-01T09:30:01.125Z',
      version: '1.1',
      metadata: { ...be.metadata, tenantId: 'tenant-789' },
      correlationId: 'corr-other',
    };
    for (const [field, value] of Object.entries(changes)) {
      const p = h.assertProblem(await c.publish({ ...be, [field]: value }), 409, 'duplicate_id');
      assert.match(p.detail, new RegExp(be.id), `${field}: ${JSON.stringify(p)}`);
    }
    const still = await stored(be.id);
    assertMapped(still, be, 'the stored event after the refused re-sends');
  });

  test('a batch mixes BaseEvents and envelopes; each keeps its own shape; the batch replays whole', async () => {
    const a = seedEvent();
    const b = seedEvent({ timestamp: '2024-03-01T10:30:00+01:00' });
    const plain = { id: 'plain-' + h.rand(4), type: 'seed.plain_checked', data: { n: 1 }, occurred_at: '2024-03-01T09:31:00Z' };
    const res = await c.publish([a, plain, b]);
    h.assertStatus(res, 201);
    assert.deepEqual(res.body.events.map((e) => e.id), [a.id, plain.id, b.id]);
    assertMapped(await stored(a.id), a, 'batch[0]');
    assertMapped(await stored(b.id), { ...b, timestamp: '2024-03-01T09:30:00.000Z' }, 'batch[2], its timestamp in UTC');
    const p = await stored(plain.id);
    assert.deepEqual(p.data, { n: 1 });
    assert.equal(p.occurred_at, '2024-03-01T09:31:00.000Z');
    assert.equal(p.metadata, null, 'an envelope gets no envelope_version');

    const again = await c.publish([a, plain, b]);
    h.assertStatus(again, 200);
    assert.equal(again.headers.get('idempotent-replay'), 'true');
  });

  test('errors name the members the producer sent: /payload/..., /timestamp, /metadata/userId, unknown members', async () => {
    let p = h.assertProblem(await c.publish(seedEvent({ payload: { bucket: 'b', key: 'k', size: 'big', contentType: 'x' } })), 422, 'schema_violation');
    errorAt(p, '/payload/size', 'type');

    p = h.assertProblem(await c.publish(seedEvent({ timestamp: 'March 1st' })), 400, 'invalid_envelope');
    errorAt(p, '/timestamp', 'format');

    const md = seedEvent().metadata;
    p = h.assertProblem(await c.publish(seedEvent({ metadata: { ...md, userId: 42 }, extra: true })), 400, 'invalid_envelope');
    errorAt(p, '/metadata/userId', 'type');
    errorAt(p, '/extra', 'additionalProperties');

    // in a batch, each error carries its index
    p = h.assertProblem(await c.publish([seedEvent(), seedEvent({ payload: [] })]), 400, 'invalid_envelope');
    const e = errorAt(p, '/payload', 'type');
    assert.equal(e.index, 1);

    // an envelope that also sends `payload` is an envelope, and `payload` is not one of its fields
    p = h.assertProblem(await c.publish({ type: 'seed.plain_checked', data: {}, payload: {} }), 400, 'invalid_envelope');
    errorAt(p, '/payload', 'additionalProperties');
  });
});

describe('occurred_at on an envelope', () => {
  test('kept in UTC with milliseconds; null when absent; part of the content', async () => {
    const id = 'occ-' + h.rand(4);
    const env = { id, type: 'seed.plain_checked', data: { n: 2 }, occurred_at: '2024-03-01T10:30:00.5+01:00' };
    h.assertStatus(await c.publish(env), 201);
    const ev = await stored(id);
    assert.equal(ev.occurred_at, '2024-03-01T09:30:00.500Z');
    assert.notEqual(ev.time, ev.occurred_at);

    const none = h.assertStatus(await c.publish({ type: 'seed.plain_checked', data: {} }), 201);
    const got = await stored(none.id);
    assert.ok('occurred_at' in got, `every stored envelope has occurred_at: ${JSON.stringify(got)}`);
    assert.equal(got.occurred_at, null);

    const replay = await c.publish(env);
    h.assertStatus(replay, 200);
    assert.equal(replay.headers.get('idempotent-replay'), 'true');
    h.assertProblem(await c.publish({ ...env, occurred_at: '2024-03-01T10:30:01.5+01:00' }), 409, 'duplicate_id');
    h.assertProblem(await c.publish({ id, type: env.type, data: env.data }), 409, 'duplicate_id');
  });

  test('a malformed occurred_at is 400 invalid_envelope naming /occurred_at', async () => {
    const bad = [
      ['2024-03-01T09:30:00', 'format'], // no time zone
      ['2024-02-30T00:00:00Z', 'format'],
      ['yesterday', 'format'],
      ['0001-01-01T00:30:00+01:00', 'format'], // year 0 in UTC
      [1709285400000, 'type'],
    ];
    for (const [value, keyword] of bad) {
      const p = h.assertProblem(await c.publish({ type: 'seed.plain_checked', data: {}, occurred_at: value }), 400, 'invalid_envelope');
      errorAt(p, '/occurred_at', keyword);
    }
    const p = h.assertProblem(await c.publish([{ type: 'seed.plain_checked', data: {} }, { type: 'seed.plain_checked', data: {}, occurred_at: 'soon' }]), 400, 'invalid_envelope');
    assert.equal(errorAt(p, '/occurred_at', 'format').index, 1);
  });
});

describe('source defaults to the API key\'s name', () => {
  test('an envelope or a BaseEvent without source gets the key\'s name; a source sent is kept', async () => {
    const name = 'billing-worker-' + h.rand(3);
    const key = await h.createKey(s, 'default', ['publish', 'read'], name);
    const k = s.client(key.token);
    const a = h.assertStatus(await k.publish({ type: 'seed.plain_checked', data: {} }), 201);
    assert.equal((await stored(a.id)).source, name);
    const b = h.assertStatus(await k.publish({ type: 'seed.plain_checked', data: {}, source: 'svc/a' }), 201);
    assert.equal((await stored(b.id)).source, 'svc/a');
    const { source: _, ...be } = seedEvent();
    h.assertStatus(await k.publish(be), 201);
    const ev = await stored(be.id);
    assertMapped(ev, { ...be, source: name }, 'a BaseEvent without source');
  });
});

describe('CloudEvents time → occurred_at', () => {
  const ce = (extra = {}) => ({
    specversion: '1.0', type: 'seed.ce_checked', source: '/tests/seed', id: 'ce-' + h.rand(4),
    time: '2024-03-01T10:30:00.25+01:00', data: { n: 1 }, ...extra,
  });

  test('structured, batch and binary modes', async () => {
    const one = ce();
    h.assertStatus(await c.request('POST', '/v1/events', { headers: { 'Content-Type': 'application/cloudevents+json' }, body: JSON.stringify(one) }), 201);
    const batch = [ce(), ce({ time: '2024-03-01T09:30:00Z' })];
    h.assertStatus(await c.request('POST', '/v1/events', { headers: { 'Content-Type': 'application/cloudevents-batch+json' }, body: JSON.stringify(batch) }), 201);
    const bin = ce();
    const headers = { 'Content-Type': 'application/json' };
    for (const k of ['specversion', 'type', 'source', 'id', 'time']) headers['ce-' + k] = bin[k];
    h.assertStatus(await c.request('POST', '/v1/events', { headers, body: JSON.stringify(bin.data) }), 201);

    const want = [[one, '2024-03-01T09:30:00.250Z'], [batch[0], '2024-03-01T09:30:00.250Z'],
      [batch[1], '2024-03-01T09:30:00.000Z'], [bin, '2024-03-01T09:30:00.250Z']];
    for (const [e, at] of want) {
      const ev = await stored(e.id);
      assert.equal(ev.occurred_at, at, JSON.stringify(ev));
      assert.ok(!('time' in ev.metadata.cloudevents), `time is mapped, not kept twice: ${JSON.stringify(ev)}`);
      assert.equal(ev.metadata.cloudevents.specversion, '1.0');
    }
  });

  test('a malformed CloudEvents time is 400 invalid_envelope at /occurred_at', async () => {
    const p = h.assertProblem(await c.request('POST', '/v1/events', { headers: { 'Content-Type': 'application/cloudevents+json' }, body: JSON.stringify(ce({ time: 'noon' })) }), 400, 'invalid_envelope');
    errorAt(p, '/occurred_at', 'format');
  });
});

// ---------------------------------------------------------------- every reader

class Peer {
  constructor(url) {
    this.msgs = [];
    this.waiters = new Set();
    this.ws = new WebSocket(url, { handshakeTimeout: 15000, perMessageDeflate: false });
    this.ws.on('error', () => { /* surfaced by open() or until() */ });
    this.ws.on('message', (d) => { this.msgs.push(JSON.parse(d.toString('utf8'))); this.wake(); });
    this.ws.on('close', () => { this.closed = true; this.wake(); });
  }

  static async open(url) {
    const p = new Peer(url);
    const r = await h.race(new Promise((resolve, reject) => { p.ws.once('open', () => resolve('open')); p.ws.once('error', reject); }), WAIT_MS, 'timeout');
    if (r !== 'open') { p.ws.terminate(); throw new Error(`WebSocket did not open: ${r}`); }
    return p;
  }

  wake() { for (const w of this.waiters) w(); }

  async until(fn, what) {
    let wake;
    const p = new Promise((resolve) => {
      wake = () => { const v = fn(); if (v || this.closed) resolve(v); };
      this.waiters.add(wake);
      wake();
    });
    const v = await h.race(p, WAIT_MS, undefined).finally(() => this.waiters.delete(wake));
    if (!v) throw new Error(`no ${what}; last messages: ${JSON.stringify(this.msgs.slice(-3)).slice(0, 1500)}`);
    return v;
  }

  async subscribe(sub) {
    this.ws.send(JSON.stringify({ op: 'subscribe', ...sub }));
    return this.until(() => this.msgs.find((m) => m.id === sub.id && (m.op === 'subscribed' || m.op === 'error')), `answer to ${sub.id}`);
  }

  event(sub, id) {
    return this.until(() => this.msgs.find((m) => m.op === 'event' && m.sub === sub && m.event.id === id), `event ${id} on ${sub}`).then((m) => m.event);
  }

  close() { this.ws.close(1000); }
}

// Reads the SSE feed until the event with id `id` arrives; returns its stored envelope.
async function sseEvent(path, id) {
  const ctrl = new AbortController();
  const res = await fetch(s.url + path, { headers: { Accept: 'text/event-stream', Authorization: `Bearer ${s.adminToken}` }, signal: ctrl.signal });
  assert.equal(res.status, 200);
  const read = (async () => {
    const dec = new TextDecoder();
    let text = '';
    for await (const chunk of res.body) {
      text += dec.decode(chunk, { stream: true });
      for (const line of text.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const ev = JSON.parse(line.slice(5));
        if (ev.id === id) return ev;
      }
    }
    return undefined;
  })();
  try {
    const ev = await h.race(read, WAIT_MS, undefined);
    assert.ok(ev, `SSE delivered ${id}`);
    return ev;
  } finally {
    ctrl.abort();
    await read.catch(() => {});
  }
}

describe('every reader returns occurred_at', () => {
  test('WebSocket live (the envelope in memory) and from history, SSE and the Redis stream agree with GET', async () => {
    const stream = 'seed-readers-' + h.rand(3);
    const peer = await Peer.open(`ws://127.0.0.1:${s.wsPort}/v1/ws?token=${encodeURIComponent(s.adminToken)}`);
    try {
      assert.equal((await peer.subscribe({ id: 'live', streams: [stream] })).op, 'subscribed');
      const be = seedEvent({ stream });
      const plain = { id: 'plain-' + h.rand(4), type: 'seed.plain_checked', data: {}, stream };
      h.assertStatus(await c.publish([be, plain]), 201);
      const want = { [be.id]: await stored(be.id), [plain.id]: await stored(plain.id) };
      assert.equal(want[be.id].occurred_at, be.timestamp);
      assert.equal(want[plain.id].occurred_at, null);

      assert.equal((await peer.subscribe({ id: 'history', streams: [stream], from_position: 0 })).op, 'subscribed');
      for (const id of [be.id, plain.id]) {
        assert.deepEqual(await peer.event('live', id), want[id], 'live: the committed envelope the hub fans out');
        assert.deepEqual(await peer.event('history', id), want[id], 'from history: the envelope read back from PostgreSQL');
        assert.deepEqual(await sseEvent(`/v1/subscribe?stream=${stream}&from_position=0`, id), want[id], 'SSE');
      }

      const url = process.env.SLUICE_REDIS_URL;
      assert.ok(url, 'SLUICE_REDIS_URL names the suite Redis');
      const entries = await h.waitFor(() => withRedis(url, async (r) => {
        const es = await xrangeAll(r, PREFIX + stream);
        return es.length >= 2 ? es : false;
      }), { timeout: WAIT_MS, what: `the Redis stream ${PREFIX + stream}` });
      for (const e of entries) assert.deepEqual(JSON.parse(e.fields.event), want[e.fields.id], 'the Redis `event` field');
    } finally {
      peer.close();
    }
  });
});
