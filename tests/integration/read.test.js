'use strict';
// Issue 2: GET /v1/events/{id} and GET /v1/events with every filter, paging and NDJSON,
// checked against a small in-test model of what was published.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let s;
let c;
const model = []; // {id, position, type, stream, key, correlation_id, user_id, time, data}
let midTime;      // strictly between phase 1 and phase 2 event times
let earlyTime;    // strictly between events ev-0029 and ev-0030
let phase1Count;

const TYPES = ['file.stored', 'file.deleted', 'filex.created', 'user.created', 'user.login.failed', 'order.placed'];

function envelope(i) {
  const e = { id: `ev-${String(i).padStart(4, '0')}`, type: TYPES[(i * 7) % TYPES.length], data: { i } };
  if (i % 7 === 0) e.stream = 'audit.events';
  if (i % 4 !== 0) e.key = 'k' + (i % 5);
  if (i % 6 !== 5) e.correlation_id = 'c' + (i % 6);
  if (i % 3 !== 0) e.user_id = 'u' + (i % 4);
  return e;
}

function record(env, ack) {
  model.push({ id: ack.id, position: ack.position, type: env.type, stream: ack.stream, key: env.key ?? null,
    correlation_id: env.correlation_id ?? ack.id, user_id: env.user_id ?? null, time: ack.time, data: env.data });
}

async function publishRange(from, to) {
  // singles and batches of various sizes, mixed
  let i = from;
  while (i < to) {
    const n = Math.min(i % 3 === 0 ? 1 : (i % 11) + 2, to - i, i < 30 ? 30 - i : Infinity);
    const envs = Array.from({ length: n }, (_, j) => envelope(i + j));
    if (i === 30) await h.sleep(60);
    const res = await c.publish(n === 1 ? envs[0] : envs);
    h.assertStatus(res, 201);
    const acks = n === 1 ? [res.body] : res.body.events;
    envs.forEach((e, j) => record(e, acks[j]));
    i += n;
  }
}

before(async () => {
  s = await h.startSluice({ name: 'read' });
  c = s.client();
  await publishRange(0, 80);
  phase1Count = model.length;
  await h.sleep(120);
  await publishRange(80, 150);
  const t1 = Date.parse(model[phase1Count - 1].time);
  const t2 = Date.parse(model[phase1Count].time);
  assert.ok(t2 - t1 >= 2, `phase 2 starts later than phase 1 ends (${t1}, ${t2})`);
  midTime = new Date(Math.floor((t1 + t2) / 2)).toISOString();
  const e1 = Date.parse(model[29].time);
  const e2 = Date.parse(model[30].time);
  assert.ok(e2 - e1 >= 2, `ev-0030 is later than ev-0029 (${e1}, ${e2})`);
  earlyTime = new Date(Math.floor((e1 + e2) / 2)).toISOString();
});
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

function typeMatches(list, type) {
  return list.split(',').some((t) => (t.endsWith('.*') ? type.startsWith(t.slice(0, -1)) : type === t));
}

function expected(q) {
  return model.filter((e) => {
    if (q.stream !== undefined && e.stream !== q.stream) return false;
    if (q.type !== undefined && !typeMatches(q.type, e.type)) return false;
    if (q.key !== undefined && e.key !== q.key) return false;
    if (q.correlation_id !== undefined && e.correlation_id !== q.correlation_id) return false;
    if (q.user_id !== undefined && e.user_id !== q.user_id) return false;
    if (q.since !== undefined && Date.parse(e.time) < Date.parse(q.since)) return false;
    if (q.until !== undefined && Date.parse(e.time) >= Date.parse(q.until)) return false;
    if (q.after !== undefined && e.position <= Number(q.after)) return false;
    return true;
  }).sort((a, b) => a.position - b.position).map((e) => e.id);
}

async function ndjson(query, client = c) {
  const res = await client.get('/v1/events?' + new URLSearchParams(query), { headers: { Accept: 'application/x-ndjson' } });
  h.assertStatus(res, 200);
  assert.match(res.contentType, /^application\/x-ndjson/);
  const lines = res.text.split('\n');
  assert.equal(lines.pop(), '', 'NDJSON ends with a newline (or is empty)');
  return lines.map((l) => JSON.parse(l));
}

const QUERIES = () => [
  {},
  { stream: 'audit.events' },
  { stream: 'file.events' },
  { type: 'file.stored' },
  { type: 'file.stored,user.created' },
  { type: 'file.*' },
  { type: 'file.*,order.placed' },
  { type: 'user.login.failed' },
  { key: 'k1' },
  { stream: 'file.events', key: 'k2' },
  { correlation_id: 'c3' },
  { correlation_id: 'ev-0005' },
  { user_id: 'u1' },
  { since: midTime },
  { until: midTime },
  { since: earlyTime, until: midTime, type: 'file.*' },
  { since: earlyTime, until: midTime },
  { after: String(model[40].position) },
  { type: 'file.*', user_id: 'u2', after: String(model[20].position) },
  { key: 'nope' },
  { type: 'no.such' },
];

describe('GET /v1/events/{id}', () => {
  test('returns the stored event, equal to its entry in a query', async () => {
    for (const m of [model[0], model[7], model[phase1Count], model[model.length - 1]]) {
      const ev = h.assertStatus(await c.get('/v1/events/' + m.id), 200);
      assert.equal(ev.id, m.id);
      assert.equal(ev.position, m.position);
      assert.equal(ev.type, m.type);
      assert.equal(ev.stream, m.stream);
      assert.equal(ev.key, m.key);
      assert.equal(ev.correlation_id, m.correlation_id);
      assert.equal(ev.user_id, m.user_id);
      assert.equal(ev.time, m.time);
      assert.deepEqual(ev.data, m.data);
      assert.equal(ev.tenant_id, 'default');
      const page = h.assertStatus(await c.get(`/v1/events?after=${m.position - 1}&limit=1`), 200);
      assert.deepEqual(page.events[0], ev, 'the same representation in a query');
    }
  });
});

describe('GET /v1/events filters and paging against the model', () => {
  test('the model is sane', () => {
    assert.equal(model.length, 150);
    assert.ok(expected({ type: 'file.*' }).length > 10);
    assert.ok(expected({ stream: 'audit.events' }).length > 5);
    assert.ok(expected({ type: 'filex.created' }).length > 5, 'filex.created exists and must not match file.*');
  });

  for (let qi = 0; qi < 21; qi++) {
    test(`query #${qi}: one big page, pages of 7, and NDJSON all equal the model`, async () => {
      const q = QUERIES()[qi];
      const want = expected(q);

      const one = await c.get('/v1/events?' + new URLSearchParams({ ...q, limit: '1000' }));
      h.assertStatus(one, 200);
      assert.deepEqual(one.body.events.map((e) => e.id), want, `single page for ${JSON.stringify(q)}`);
      assert.equal(one.body.has_more, false);

      const { events, pages } = await h.readAllPages(c, q, { limit: 7 });
      assert.deepEqual(events.map((e) => e.id), want, `pages of 7 for ${JSON.stringify(q)}`);
      const full = Math.max(1, Math.ceil(want.length / 7));
      assert.ok(pages === full || (pages === full + 1 && want.length % 7 === 0),
        `${pages} pages for ${want.length} events (at most one extra, empty, page)`);

      const lines = await ndjson(q);
      assert.deepEqual(lines.map((e) => e.id), want, `NDJSON for ${JSON.stringify(q)}`);
    });
  }

  test('positions in every answer are strictly increasing', async () => {
    const { events } = await h.readAllPages(c, {}, { limit: 13 });
    for (let i = 1; i < events.length; i++) assert.ok(events[i].position > events[i - 1].position);
  });

  test('limit defaults to 100', async () => {
    const res = h.assertStatus(await c.get('/v1/events'), 200);
    assert.equal(res.events.length, 100);
    assert.equal(res.has_more, true);
    assert.equal(res.next_after, res.events[99].position);
    assert.deepEqual(res.events.map((e) => e.id), expected({}).slice(0, 100));
  });

  test('limit above 1000 is refused or capped, never more than 1000', async () => {
    const res = await c.get('/v1/events?limit=5000');
    assert.ok(res.status === 400 || (res.status === 200 && res.body.events.length <= 1000), h.describeRes(res));
  });

  test('after past the end → empty page, has_more false', async () => {
    const last = model[model.length - 1].position;
    const res = h.assertStatus(await c.get(`/v1/events?after=${last}`), 200);
    assert.deepEqual(res.events, []);
    assert.equal(res.has_more, false);
  });

  test('malformed parameters → 400', async () => {
    for (const q of ['limit=abc', 'limit=-1', 'after=xyz', 'since=yesterday', 'until=2024-13-45T99:00:00Z']) {
      const res = await c.get('/v1/events?' + q);
      assert.equal(res.status, 400, `${q}: ${h.describeRes(res)}`);
      assert.match(res.contentType, /^application\/problem\+json/);
    }
  });
});

describe('NDJSON', () => {
  test('streams every match past the page limits, one event per line, in position order', async () => {
    const tag = h.rand(3);
    const extra = [];
    for (let b = 0; b < 3; b++) {
      const envs = Array.from({ length: 600 }, (_, i) => ({ id: `bulk-${tag}-${b}-${i}`, type: 'bulk.loaded', data: { b, i, pad: 'x'.repeat(100) } }));
      const res = await c.publish(envs);
      h.assertStatus(res, 201);
      extra.push(...res.body.events.map((e) => e.id));
    }
    const lines = await ndjson({ type: 'bulk.loaded' });
    assert.equal(lines.length, 1800, 'no page limit on NDJSON');
    assert.deepEqual(lines.map((e) => e.id), extra);
    for (let i = 1; i < lines.length; i++) assert.ok(lines[i].position > lines[i - 1].position);
    assert.deepEqual(lines[5].data, { b: 0, i: 5, pad: 'x'.repeat(100) });
    const all = await ndjson({});
    assert.equal(all.length, model.length + 1800);
    assert.deepEqual(all.slice(0, model.length).map((e) => e.id), expected({}));
  });

  test('an empty match is an empty body', async () => {
    const lines = await ndjson({ key: 'nothing-here' });
    assert.equal(lines.length, 0);
  });
});
