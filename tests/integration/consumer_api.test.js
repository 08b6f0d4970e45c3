'use strict';
// Issue 15: the consumer API (API.md "Consumer groups and dead letters", server/consume.h).
// Workers take a group's messages through Sluice with a `consume` key and no Redis access:
// POST /v1/streams/{stream}/groups/{group}/{fetch,ack,nack,extend} over HTTP, and the
// `consume` op over the WebSocket. Covered here: fetch and ack (receipts, attempts, stored
// envelopes in order, long polls), nacks and the retry strategies (exponential, linear,
// fixed; retry_in_ms, delay_ms, retryable:false, dead letters after max_deliveries), stale
// receipts after an ack timeout, extend, the group's filter, scopes and tenants, WebSocket
// consumers (max_in_flight, ack and nack frames, unsubscribe, a consumer that disconnects)
// and the commit-to-ack histogram on /metrics.
//
// Each test starts its own sluice with its own SLUICE_REDIS_PREFIX (lib/groups_kit.js) and
// stops it. Short policies keep the tests quick; nothing asserts on durations: waits poll for
// a state within generous "no hang" bounds. Where a short ack timeout could expire between a
// fetch and the test's next request on a slow machine, the test extends the delivery first
// and fetches again if that delivery had already timed out.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('./lib/harness');
const { withRedis, deletePrefix, pendingEntries, waitInRedis, typeBase, keyOf, groupsPath, createGroup, publishN, allDeadLetters, startGroupsSluice } = require('./lib/groups_kit');

const WAIT_MS = 30000; // "no hang" bound for one expected state
const FIXED_100 = { strategy: 'fixed', base_delay_ms: 100, max_delay_ms: 10000, jitter: false };

// ---------------------------------------------------------------- helpers

// One sluice (own database, own Redis prefix) for fn({s, c, prefix}); always stopped.
async function withSluice(name, fn) {
  const { s, c, prefix } = await startGroupsSluice(name);
  try {
    await fn({ s, c, prefix });
  } finally {
    await s.stop().finally(() => s.cleanup());
    await deletePrefix(prefix);
  }
}

const opPath = (stream, group, op) => `${groupsPath(stream)}/${encodeURIComponent(group)}/${op}`;

// A new stream with one group on it (start "$"): {t, stream, key, group, type}.
async function newGroup(c, prefix, body) {
  const t = typeBase();
  const stream = `${t}.events`;
  const group = body.name || 'g' + h.rand(2);
  await createGroup(c, stream, { name: group, start: '$', ...body });
  return { t, stream, key: keyOf(prefix, stream), group, type: `${t}.x` };
}

function assertMessage(m, what) {
  assert.equal(typeof m.receipt, 'string', `${what}: a receipt: ${JSON.stringify(m)}`);
  assert.ok(m.receipt.length > 0, `${what}: a non-empty receipt`);
  assert.ok(Number.isInteger(m.attempt) && m.attempt >= 1, `${what}: an integer attempt: ${JSON.stringify(m)}`);
  assert.ok(m.event && typeof m.event === 'object', `${what}: an event: ${JSON.stringify(m)}`);
}

// One fetch; asserts 200 and returns the messages.
async function fetchOnce(c, g, body) {
  const res = await c.post(opPath(g.stream, g.group, 'fetch'), body);
  const out = h.assertStatus(res, 200);
  assert.ok(Array.isArray(out.messages), h.describeRes(res));
  out.messages.forEach((m, i) => assertMessage(m, `message ${i}`));
  return out.messages;
}

// Fetches as `consumer` (long polls of 1 s) until n messages came; returns them.
async function fetchN(c, g, consumer, n, timeout = WAIT_MS) {
  const got = [];
  const deadline = Date.now() + timeout;
  while (got.length < n) {
    assert.ok(Date.now() < deadline, `${consumer} fetched ${got.length} of ${n} messages of ${g.group} within ${timeout} ms: ${JSON.stringify(got)}`);
    got.push(...await fetchOnce(c, g, { consumer, max: n - got.length, wait_ms: 1000 }));
  }
  return got;
}

const ack = (c, g, receipts) => c.post(opPath(g.stream, g.group, 'ack'), { receipts });
const nack = (c, g, body) => c.post(opPath(g.stream, g.group, 'nack'), body);
const extend = (c, g, receipts, ms) => c.post(opPath(g.stream, g.group, 'extend'), { receipts, ms });

// Fetches one message as `consumer` and extends it at once to `ms`; a delivery that timed
// out before the extend (a slow machine) is fetched again. Returns the extended message.
async function fetchAndHold(c, g, consumer, ms = 30000) {
  for (let i = 0; i < 5; i++) {
    const [m] = await fetchN(c, g, consumer, 1);
    const x = h.assertStatus(await extend(c, g, [m.receipt], ms), 200);
    if (x.extended === 1) {
      assert.deepEqual(x.stale, []);
      return m;
    }
    assert.deepEqual(x.stale, [m.receipt], `extend answered ${JSON.stringify(x)}`);
  }
  throw new Error(`${consumer} could not hold a delivery of ${g.group} for five fetches`);
}

// Waits until the entry at `position` is no longer pending with `consumer` (the sweeper
// timed its delivery out); returns its XPENDING row (or undefined once it is acknowledged).
async function waitTimedOut(g, position, consumer) {
  return withRedis((r) => h.waitFor(async () => {
    const p = (await pendingEntries(r, g.key, g.group)).find((x) => x.position === position);
    return p && p.consumer !== consumer ? p : false;
  }, { timeout: WAIT_MS, interval: 50, what: `the delivery of ${position} to ${consumer} to time out` }));
}

// Stored events of a stream, by id.
async function stored(c, stream) {
  const { events } = await h.readAllPages(c, { stream });
  return new Map(events.map((e) => [e.id, e]));
}

// ---------------------------------------------------------------- a WebSocket consumer

// Keeps every frame (parsed) in order; until() re-checks a predicate on each frame.
class Peer {
  constructor(url) {
    this.msgs = [];
    this.waiters = new Set();
    this.closeInfo = null;
    this.ws = new WebSocket(url, { handshakeTimeout: 15000, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => { /* surfaced through opened / closed */ });
    this.ws.on('message', (data) => {
      this.msgs.push(JSON.parse(data.toString('utf8')));
      if (this.onMessage) this.onMessage(this.msgs[this.msgs.length - 1]);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }

  static async open(s, token) {
    const p = new Peer(`ws://127.0.0.1:${s.wsPort}/v1/ws?token=${encodeURIComponent(token)}`);
    const r = await h.race(p.opened.then(() => 'open', (e) => e), WAIT_MS, 'timeout');
    if (r !== 'open') {
      p.ws.terminate();
      throw new Error(`the WebSocket did not open: ${r instanceof Error ? r.message : r}`);
    }
    return p;
  }

  wake() { for (const w of this.waiters) w(); }

  send(m) { this.ws.send(JSON.stringify(m)); }

  async until(fn, what, timeout = WAIT_MS) {
    let v = fn();
    if (v) return v;
    let wake;
    const p = new Promise((resolve) => {
      wake = () => { const x = fn(); if (x || this.closeInfo) resolve(x); };
      this.waiters.add(wake);
    });
    try { v = await h.race(p, timeout, undefined); } finally { this.waiters.delete(wake); }
    if (!v) v = fn();
    if (!v) {
      throw new Error(`${this.closeInfo ? 'closed ' + JSON.stringify(this.closeInfo) : 'timed out after ' + timeout + ' ms'} waiting for ${what}; frames: ${JSON.stringify(this.msgs.slice(-6)).slice(0, 3000)}`);
    }
    return v;
  }

  // The first frame with this op (and fields) not yet taken by an earlier reply().
  async reply(op, fields = {}) {
    this.taken = this.taken || new Set();
    return this.until(() => {
      const i = this.msgs.findIndex((m, j) => !this.taken.has(j) && m.op === op &&
        Object.entries(fields).every(([k, v]) => m[k] === v));
      if (i < 0) return null;
      this.taken.add(i);
      return this.msgs[i];
    }, `${op} ${JSON.stringify(fields)}`);
  }

  messages(sub) { return this.msgs.filter((m) => m.op === 'message' && m.sub === sub); }

  async waitMessages(sub, n) {
    await this.until(() => this.messages(sub).length >= n, `${n} messages on ${sub}`);
    return this.messages(sub);
  }

  errors() { return this.msgs.filter((m) => m.op === 'error'); }

  // Closes (1000) and waits for the close; terminates if the server does not answer.
  async close() {
    if (this.closeInfo) return;
    try { this.ws.close(1000); } catch (_) { /* closed */ }
    if (!(await h.race(this.closed, 10000, null))) this.ws.terminate();
    await this.closed;
  }

  async terminate() {
    this.ws.terminate();
    await this.closed;
  }
}

// ---------------------------------------------------------------- fetch and ack

test('fetch and ack: attempts, stored envelopes in order, stale re-acks, empty fetch, long poll', { timeout: 120000 }, async () => {
  await withSluice('consume-fetch', async ({ c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'work' });
    const evs = await publishN(c, g.type, 3, (i) => ({ i, what: `job ${i}` }));
    await waitInRedis(g.key, evs[2].position);
    const byId = await stored(c, g.stream);

    const first = await fetchOnce(c, g, { consumer: 'w1', max: 2 });
    assert.equal(first.length, 2, 'max 2 of the 3 waiting');
    assert.deepEqual(first.map((m) => m.attempt), [1, 1], 'first deliveries');
    assert.deepEqual(first.map((m) => m.event.id), [evs[0].id, evs[1].id], 'in position order');
    for (const m of first) assert.deepEqual(m.event, byId.get(m.event.id), 'the stored envelope, as GET /v1/events has it');
    assert.notEqual(first[0].receipt, first[1].receipt, 'a receipt per delivery');

    const receipts = first.map((m) => m.receipt);
    assert.deepEqual(h.assertStatus(await ack(c, g, receipts), 200), { acked: 2, stale: [] });
    assert.deepEqual(h.assertStatus(await ack(c, g, receipts), 200), { acked: 0, stale: receipts },
      'acknowledged receipts acknowledge nothing again');

    const [third] = await fetchOnce(c, g, { consumer: 'w1', max: 10 });
    assert.ok(third, 'the third event is delivered next');
    assert.equal(third.event.id, evs[2].id);
    assert.equal(third.attempt, 1);
    assert.deepEqual(third.event, byId.get(evs[2].id));
    assert.deepEqual(await fetchOnce(c, g, { consumer: 'w2', max: 10 }), [], 'the third is in flight: not delivered twice');
    assert.deepEqual(h.assertStatus(await ack(c, g, [third.receipt]), 200), { acked: 1, stale: [] });
    assert.deepEqual(await fetchOnce(c, g, { consumer: 'w1', wait_ms: 0 }), [], 'nothing left: an empty list at once');

    // a long poll answered by an event published while it waits
    const poll = fetchOnce(c, g, { consumer: 'w1', max: 10, wait_ms: 5000 });
    await h.sleep(300);
    const [late] = await publishN(c, g.type, 1, () => ({ late: true }));
    const got = await poll;
    assert.equal(got.length, 1, `the long poll returns the new event: ${JSON.stringify(got)}`);
    assert.equal(got[0].event.id, late.id);
    assert.deepEqual(got[0].event.data, { late: true });
    assert.equal(got[0].attempt, 1);
    assert.deepEqual(h.assertStatus(await ack(c, g, [got[0].receipt]), 200), { acked: 1, stale: [] });
    await withRedis(async (r) => assert.deepEqual(await pendingEntries(r, g.key, g.group), [], 'nothing pending in Redis'));

    // an unknown group, a bad body
    h.assertProblem(await c.post(opPath(g.stream, 'nope', 'fetch'), { consumer: 'w1' }), 404, 'not_found');
    h.assertProblem(await c.post(opPath(g.stream, g.group, 'fetch'), { max: 1 }), 400, 'invalid_request');
  });
});

// ---------------------------------------------------------------- nack and retries

test('nack: retry_in_ms follows the strategy, retries come back with attempt+1, the last failure is a dead letter; retryable:false; delay_ms', { timeout: 180000 }, async () => {
  await withSluice('consume-nack', async ({ c, prefix }) => {
    const expected = { exponential: [100, 200], linear: [100, 200], fixed: [100, 100] };
    for (const [strategy, delays] of Object.entries(expected)) {
      const g = await newGroup(c, prefix, {
        name: strategy, max_deliveries: 3, ack_timeout_ms: 30000,
        retry: { strategy, base_delay_ms: 100, max_delay_ms: 10000, jitter: false },
      });
      const [ev] = await publishN(c, g.type, 1);
      const answers = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        const [m] = await fetchN(c, g, `w${attempt}`, 1);
        assert.equal(m.event.id, ev.id, `${strategy}: the same event every time`);
        assert.equal(m.attempt, attempt, `${strategy}: delivery ${attempt}`);
        const res = await nack(c, g, { receipt: m.receipt, error: `${strategy} failure ${attempt}`, retryable: true, delay_ms: null });
        answers.push(h.assertStatus(res, 200));
        assert.equal(answers[attempt - 1].attempt, attempt);
      }
      assert.deepEqual(answers.map((a) => a.status), ['retry_scheduled', 'retry_scheduled', 'dead_lettered'], `${strategy}: ${JSON.stringify(answers)}`);
      assert.deepEqual(answers.slice(0, 2).map((a) => a.retry_in_ms), delays, `${strategy}: the backoff after attempts 1 and 2`);
      const dls = await allDeadLetters(c, { stream: g.stream, group: g.group });
      assert.equal(dls.length, 1, `${strategy}: one dead letter: ${JSON.stringify(dls)}`);
      const [dl] = dls;
      assert.equal(dl.event_id, ev.id);
      assert.equal(dl.event_position, ev.position);
      assert.equal(dl.source, `group:${strategy}`);
      assert.equal(dl.delivery_count, 3);
      assert.equal(dl.errors.length, 3, `${strategy}: an error per failed delivery: ${JSON.stringify(dl.errors)}`);
      assert.deepEqual(dl.errors.map((e) => e.error), [1, 2, 3].map((n) => `${strategy} failure ${n}`));
      assert.deepEqual(await fetchOnce(c, g, { consumer: 'w9', wait_ms: 1000 }), [], `${strategy}: a dead letter is delivered no more`);
    }

    // retryable:false: a dead letter at once
    const p = await newGroup(c, prefix, { name: 'poison', max_deliveries: 3, ack_timeout_ms: 30000, retry: FIXED_100 });
    const [pev] = await publishN(c, p.type, 1);
    const [pm] = await fetchN(c, p, 'w1', 1);
    const dead = h.assertStatus(await nack(c, p, { receipt: pm.receipt, error: 'cannot parse', retryable: false }), 200);
    assert.equal(dead.status, 'dead_lettered');
    assert.equal(dead.attempt, 1);
    const [pdl] = await allDeadLetters(c, { stream: p.stream, group: p.group });
    assert.ok(pdl, 'the dead letter is listed');
    assert.equal(pdl.event_id, pev.id);
    assert.equal(pdl.delivery_count, 1);
    assert.deepEqual(pdl.errors.map((e) => e.error), ['cannot parse']);
    assert.deepEqual(await fetchOnce(c, p, { consumer: 'w1', wait_ms: 1000 }), [], 'not retried');
    // its receipt is spent
    h.assertProblem(await nack(c, p, { receipt: pm.receipt, error: 'again' }), 409, 'stale_receipt');

    // delay_ms overrides the backoff: a retry 60 s away does not come back after 100 ms
    const d = await newGroup(c, prefix, { name: 'delayed', max_deliveries: 3, ack_timeout_ms: 30000, retry: FIXED_100 });
    const [dev] = await publishN(c, d.type, 2);
    const [dm] = await fetchN(c, d, 'w1', 1);
    assert.equal(dm.event.id, dev.id);
    const later = h.assertStatus(await nack(c, d, { receipt: dm.receipt, error: 'busy', delay_ms: 60000 }), 200);
    assert.deepEqual({ status: later.status, attempt: later.attempt, retry_in_ms: later.retry_in_ms },
      { status: 'retry_scheduled', attempt: 1, retry_in_ms: 60000 });
    // the second event comes; the first does not (its default backoff of 100 ms is long past)
    const [next] = await fetchN(c, d, 'w1', 1);
    assert.equal(next.attempt, 1);
    assert.notEqual(next.event.id, dev.id);
    h.assertStatus(await ack(c, d, [next.receipt]), 200);
    assert.deepEqual(await fetchOnce(c, d, { consumer: 'w1', wait_ms: 1500 }), [], 'the delayed retry is not due');
    // delay_ms 0: due at once
    const zero = await newGroup(c, prefix, { name: 'now', max_deliveries: 3, ack_timeout_ms: 30000, retry: { ...FIXED_100, base_delay_ms: 5000 } });
    const [zev] = await publishN(c, zero.type, 1);
    const [zm] = await fetchN(c, zero, 'w1', 1);
    const z = h.assertStatus(await nack(c, zero, { receipt: zm.receipt, error: 'again now', delay_ms: 0 }), 200);
    assert.equal(z.retry_in_ms, 0);
    const [zr] = await fetchN(c, zero, 'w2', 1);
    assert.equal(zr.event.id, zev.id);
    assert.equal(zr.attempt, 2);
    assert.deepEqual(h.assertStatus(await ack(c, zero, [zr.receipt]), 200), { acked: 1, stale: [] });
  });
});

// ---------------------------------------------------------------- stale receipts

test('an ack timeout makes the receipt stale: ack → stale, nack → 409 stale_receipt, extend → stale; the new delivery acks', { timeout: 120000 }, async () => {
  await withSluice('consume-stale', async ({ c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'slow', max_deliveries: 10, ack_timeout_ms: 300, retry: FIXED_100 });
    const [ev] = await publishN(c, g.type, 1);
    const [a] = await fetchN(c, g, 'A', 1);
    assert.equal(a.attempt, 1);
    await waitTimedOut(g, ev.position, 'api:A');
    // timed out, not yet handed on: stale already
    assert.deepEqual(h.assertStatus(await ack(c, g, [a.receipt]), 200), { acked: 0, stale: [a.receipt] });

    // handed to another consumer
    const b = await fetchAndHold(c, g, 'B');
    assert.equal(b.event.id, ev.id);
    assert.ok(b.attempt >= 2, `a later delivery: ${b.attempt}`);
    assert.notEqual(b.receipt, a.receipt);
    assert.deepEqual(h.assertStatus(await ack(c, g, [a.receipt]), 200), { acked: 0, stale: [a.receipt] },
      'the first receipt acknowledges nothing while B holds the message');
    h.assertProblem(await nack(c, g, { receipt: a.receipt, error: 'late' }), 409, 'stale_receipt');
    assert.deepEqual(h.assertStatus(await extend(c, g, [a.receipt], 30000), 200), { extended: 0, stale: [a.receipt] });
    await withRedis(async (r) => {
      const [p] = await pendingEntries(r, g.key, g.group);
      assert.equal(p.consumer, 'api:B', 'still with B after the stale ack, nack and extend');
    });
    assert.deepEqual(h.assertStatus(await ack(c, g, [b.receipt, a.receipt]), 200), { acked: 1, stale: [a.receipt] });
    assert.deepEqual(await allDeadLetters(c, { stream: g.stream, group: g.group }), [], 'the stale nack recorded nothing');
    await withRedis(async (r) => assert.deepEqual(await pendingEntries(r, g.key, g.group), []));

    // the same consumer fetching the message again gets a new receipt; the old one is stale
    const [ev2] = await publishN(c, g.type, 1);
    const [first] = await fetchN(c, g, 'A', 1);
    assert.equal(first.event.id, ev2.id);
    await waitTimedOut(g, ev2.position, 'api:A');
    const again = await fetchAndHold(c, g, 'A');
    assert.equal(again.event.id, ev2.id);
    assert.ok(again.attempt >= 2);
    assert.notEqual(again.receipt, first.receipt);
    assert.deepEqual(h.assertStatus(await ack(c, g, [first.receipt, again.receipt]), 200), { acked: 1, stale: [first.receipt] });
  });
});

// ---------------------------------------------------------------- extend

test('extend: the ack deadline moves past ack_timeout_ms, so a late ack is not stale', { timeout: 120000 }, async () => {
  await withSluice('consume-extend', async ({ c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'long', max_deliveries: 10, ack_timeout_ms: 500, retry: FIXED_100 });
    const [ev] = await publishN(c, g.type, 1);
    const m = await fetchAndHold(c, g, 'w1', 3000);
    assert.equal(m.event.id, ev.id);
    await h.sleep(1500); // three times ack_timeout_ms; the sweeper runs every 200 ms
    await withRedis(async (r) => {
      const [p] = await pendingEntries(r, g.key, g.group);
      assert.equal(p.consumer, 'api:w1', 'the extended delivery was not timed out');
    });
    assert.deepEqual(await fetchOnce(c, g, { consumer: 'w2', wait_ms: 0 }), [], 'nor handed to anyone else');
    assert.deepEqual(h.assertStatus(await ack(c, g, [m.receipt]), 200), { acked: 1, stale: [] });
    assert.deepEqual(await fetchOnce(c, g, { consumer: 'w1', wait_ms: 1000 }), [], 'acknowledged: never again');
    // extending an acknowledged delivery: stale; ms below 1 is refused
    assert.deepEqual(h.assertStatus(await extend(c, g, [m.receipt], 1000), 200), { extended: 0, stale: [m.receipt] });
    h.assertProblem(await extend(c, g, [m.receipt], 0), 400, 'invalid_request');
  });
});

// ---------------------------------------------------------------- the group's filter

test('a group filter: only matching events are fetched; the others are acknowledged for the group', { timeout: 120000 }, async () => {
  await withSluice('consume-filter', async ({ c, prefix }) => {
    const stream = 'order.events';
    const g = { stream, key: keyOf(prefix, stream), group: 'big-orders' };
    await createGroup(c, stream, {
      name: g.group, start: '$', ack_timeout_ms: 30000,
      filter: { types: ['order.*'], where: [{ path: '/data/amount', op: 'gt', value: 100 }] },
    });
    const envs = [
      { type: 'order.created', data: { amount: 50 } },      // too small
      { type: 'order.created', data: { amount: 150 } },     // match
      { type: 'user.created', data: { amount: 1000 } },     // wrong type
      { type: 'order.paid', data: { amount: 500 } },        // match
      { type: 'order.created', data: { note: 'no amount' } }, // no amount
      { type: 'order.created', data: { amount: 100 } },     // not greater
      { type: 'order.item.added', data: { amount: 101 } },  // match (order.* covers it)
      { type: 'invoice.sent', data: { amount: 999 } },      // wrong type
    ].map((e) => ({ ...e, stream }));
    const res = await c.publish(envs);
    const evs = h.assertStatus(res, 201).events;
    const matching = [1, 3, 6].map((i) => evs[i]);
    await waitInRedis(g.key, evs[evs.length - 1].position);

    const got = [];
    for (;;) {
      const batch = await fetchOnce(c, g, { consumer: 'w1', max: 2, wait_ms: 0 });
      if (!batch.length) break;
      got.push(...batch);
      assert.ok(got.length <= evs.length, 'fetching ends');
    }
    assert.deepEqual(got.map((m) => m.event.id), matching.map((e) => e.id), 'exactly the matching events, in order');
    for (const m of got) assert.equal(m.attempt, 1);
    await withRedis(async (r) => {
      const p = await pendingEntries(r, g.key, g.group);
      assert.deepEqual(p.map((x) => x.position), matching.map((e) => e.position), 'only the delivered events are pending; the others were acknowledged');
      for (const x of p) assert.equal(x.consumer, 'api:w1');
    });
    assert.deepEqual(h.assertStatus(await ack(c, g, got.map((m) => m.receipt)), 200), { acked: 3, stale: [] });
    assert.deepEqual(await fetchOnce(c, g, { consumer: 'w2', wait_ms: 1000 }), [], 'the others never come');
    await withRedis(async (r) => assert.deepEqual(await pendingEntries(r, g.key, g.group), [], 'nothing pending'));
    assert.deepEqual(await allDeadLetters(c, { stream, group: g.group }), [], 'filtered out is not failed');
  });
});

// ---------------------------------------------------------------- scopes and tenants

test('scopes and tenants: consume fetches and acks; read alone is 403; another tenant sees no group (404)', { timeout: 120000 }, async () => {
  await withSluice('consume-scopes', async ({ s, c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'scoped', ack_timeout_ms: 30000 });
    const [ev] = await publishN(c, g.type, 1);
    const consumeKey = await h.createKey(s, 'default', ['consume']);
    const readKey = await h.createKey(s, 'default', ['read']);
    const otherKey = await h.createKey(s, 'acme', ['consume', 'read', 'publish', 'subscribe']);
    const cc = c.withToken(consumeKey.token);
    const rc = c.withToken(readKey.token);
    const oc = c.withToken(otherKey.token);

    const [m] = await fetchN(cc, g, 'w1', 1);
    assert.equal(m.event.id, ev.id);

    // read alone: 403 on every consumer route
    h.assertProblem(await rc.post(opPath(g.stream, g.group, 'fetch'), { consumer: 'w1' }), 403, 'forbidden');
    h.assertProblem(await ack(rc, g, [m.receipt]), 403, 'forbidden');
    h.assertProblem(await nack(rc, g, { receipt: m.receipt, error: 'x' }), 403, 'forbidden');
    h.assertProblem(await extend(rc, g, [m.receipt], 1000), 403, 'forbidden');
    h.assertProblem(await c.post(opPath(g.stream, g.group, 'fetch'), { consumer: 'w1' }, { token: null }), 401, 'unauthenticated');

    // another tenant: the group does not exist for it, receipts of the first tenant included
    h.assertProblem(await oc.post(opPath(g.stream, g.group, 'fetch'), { consumer: 'w1', wait_ms: 0 }), 404, 'not_found');
    h.assertProblem(await ack(oc, g, [m.receipt]), 404, 'not_found');
    h.assertProblem(await nack(oc, g, { receipt: m.receipt, error: 'x', retryable: false }), 404, 'not_found');
    h.assertProblem(await extend(oc, g, [m.receipt], 1000), 404, 'not_found');
    // its own events on a stream of the same name do not reach the first tenant's group
    h.assertStatus(await oc.publish({ type: g.type, data: { tenant: 'acme' } }), 201);

    await withRedis(async (r) => {
      const [p] = await pendingEntries(r, g.key, g.group);
      assert.equal(p.consumer, 'api:w1', 'the other tenant moved nothing');
    });
    assert.deepEqual(h.assertStatus(await ack(cc, g, [m.receipt]), 200), { acked: 1, stale: [] }, 'the consume key acks');
    assert.deepEqual(await fetchOnce(cc, g, { consumer: 'w1', wait_ms: 1000 }), [], 'the other tenant\'s event is not in this group');
    assert.deepEqual(await allDeadLetters(c, { stream: g.stream }), [], 'the other tenant\'s nack dead-lettered nothing');
  });
});

// ---------------------------------------------------------------- WebSocket

test('WebSocket consume: max_in_flight, ack and nack frames, unsubscribe', { timeout: 120000 }, async () => {
  await withSluice('consume-ws', async ({ s, c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'wsg', max_deliveries: 3, ack_timeout_ms: 60000, retry: FIXED_100 });
    const evs = await publishN(c, g.type, 5);
    await waitInRedis(g.key, evs[4].position);
    const key = await h.createKey(s, 'default', ['consume']);
    const peer = await Peer.open(s, key.token);
    try {
      // Invariant: a message arrives only while fewer than max_in_flight are unresolved, so
      // messages received ≤ max_in_flight + acks and nacks sent before it (the server
      // processes a resolution before it can send the message that takes its place).
      let resolved = 0;
      const violations = [];
      peer.onMessage = (m) => {
        if (m.op === 'message' && peer.messages('c1').length > 2 + resolved) violations.push({ n: peer.messages('c1').length, resolved });
      };
      const resolve = (frame) => {
        resolved += frame.op === 'ack' ? frame.receipts.length : 1;
        peer.send(frame);
      };

      peer.send({ op: 'consume', id: 'c1', stream: g.stream, group: g.group, consumer: 'wsc', max_in_flight: 2 });
      const ok = await peer.reply('consuming', { id: 'c1' });
      assert.equal(ok.max_in_flight, 2);
      const two = await peer.waitMessages('c1', 2);
      assert.deepEqual(two.map((m) => m.event.id), [evs[0].id, evs[1].id]);
      for (const m of two) {
        assertMessage(m, 'ws message');
        assert.equal(m.attempt, 1);
      }
      await h.sleep(1000); // time for a third message, if the server would send one
      assert.equal(peer.messages('c1').length, 2, 'no more than max_in_flight unacknowledged');
      await withRedis(async (r) => {
        const p = await pendingEntries(r, g.key, g.group);
        assert.deepEqual(p.map((x) => [x.position, x.consumer]), [[evs[0].position, 'api:wsc'], [evs[1].position, 'api:wsc']]);
      });

      // an ack frees a place: the third comes
      resolve({ op: 'ack', receipts: [two[0].receipt] });
      assert.deepEqual(await peer.reply('acked'), { op: 'acked', acked: 1, stale: [] });
      const three = await peer.waitMessages('c1', 3);
      assert.equal(three[2].event.id, evs[2].id);

      // a nack frame: the message is retried (attempt 2), first of what comes next
      resolve({ op: 'nack', receipt: two[1].receipt, error: 'ws failure', retryable: true, delay_ms: null });
      const nacked = await peer.reply('nacked');
      assert.equal(nacked.receipt, two[1].receipt);
      assert.equal(nacked.status, 'retry_scheduled');
      assert.equal(nacked.attempt, 1);
      assert.equal(nacked.retry_in_ms, 100);

      // ack whatever comes until every event is acknowledged; the nacked one comes back
      const acked = new Set([evs[0].id]);
      let seen = 3;
      const byEvent = new Map();
      resolve({ op: 'ack', receipts: [three[2].receipt] });
      acked.add(evs[2].id);
      while (acked.size < evs.length) {
        const all = await peer.waitMessages('c1', seen + 1);
        const m = all[seen++];
        byEvent.set(m.event.id, (byEvent.get(m.event.id) || []).concat(m.attempt));
        resolve({ op: 'ack', receipts: [m.receipt] });
        acked.add(m.event.id);
      }
      await peer.until(() => peer.msgs.filter((m) => m.op === 'acked').length === seen - 1, 'every ack answered');
      assert.deepEqual(peer.msgs.filter((m) => m.op === 'acked').map((m) => m.acked), Array(seen - 1).fill(1), 'every ack acknowledged one');
      assert.deepEqual(byEvent.get(evs[1].id), [2], 'the nacked message came back once, as attempt 2');
      assert.deepEqual([...acked].sort(), evs.map((e) => e.id).sort());
      assert.equal(seen, 6, 'five events, one of them twice');
      assert.deepEqual(violations, [], 'never more than max_in_flight in flight');
      assert.deepEqual(peer.errors(), []);
      await withRedis(async (r) => assert.deepEqual(await pendingEntries(r, g.key, g.group), [], 'nothing pending'));

      // unsubscribe: no more messages for c1; another consumer gets the next event
      peer.send({ op: 'unsubscribe', id: 'c1' });
      await peer.reply('unsubscribed', { id: 'c1' });
      const [late] = await publishN(c, g.type, 1);
      const [m6] = await fetchN(c, g, 'http', 1);
      assert.equal(m6.event.id, late.id);
      assert.equal(m6.attempt, 1);
      h.assertStatus(await ack(c, g, [m6.receipt]), 200);
      assert.equal(peer.messages('c1').length, 6, 'nothing after unsubscribed');

      // a consume of an unknown group is an error frame
      peer.send({ op: 'consume', id: 'c2', stream: g.stream, group: 'nope', consumer: 'wsc', max_in_flight: 1 });
      const err = await peer.reply('error', { id: 'c2' });
      assert.equal(err.code, 'not_found');
    } finally {
      await peer.close();
    }
  });
});

test('WebSocket consume: a consumer that disconnects with messages in flight — they come back, attempt 2, to another consumer', { timeout: 120000 }, async () => {
  await withSluice('consume-ws-drop', async ({ s, c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'drop', max_deliveries: 5, ack_timeout_ms: 500, retry: FIXED_100 });
    const evs = await publishN(c, g.type, 2);
    await waitInRedis(g.key, evs[1].position);
    const gone = await Peer.open(s, s.adminToken);
    const peers = [gone];
    try {
      gone.send({ op: 'consume', id: 'c1', stream: g.stream, group: g.group, consumer: 'gone', max_in_flight: 2 });
      await gone.reply('consuming', { id: 'c1' });
      const held = await gone.waitMessages('c1', 2);
      assert.deepEqual(held.map((m) => [m.event.id, m.attempt]), [[evs[0].id, 1], [evs[1].id, 1]]);
      await gone.terminate();

      // the second consumer, also over the WebSocket, takes them when they time out
      const key = await h.createKey(s, 'default', ['consume']);
      const second = await Peer.open(s, key.token);
      peers.push(second);
      second.send({ op: 'consume', id: 'k', stream: g.stream, group: g.group, consumer: 'second', max_in_flight: 10 });
      await second.reply('consuming', { id: 'k' });
      const back = await second.waitMessages('k', 2);
      assert.deepEqual(back.slice(0, 2).map((m) => m.event.id).sort(), evs.map((e) => e.id).sort());
      for (const m of back.slice(0, 2)) assert.equal(m.attempt, 2, `redelivered as attempt 2: ${JSON.stringify(m)}`);
      second.send({ op: 'ack', receipts: back.slice(0, 2).map((m) => m.receipt) });
      const a = await second.reply('acked');
      // the ack may race a timeout on a very slow machine; what is acked is never delivered again
      assert.equal(a.acked + a.stale.length, 2);
      if (a.acked === 2) {
        await withRedis(async (r) => assert.deepEqual(await pendingEntries(r, g.key, g.group), []));
      }
      // and the old receipts are stale
      assert.deepEqual(h.assertStatus(await ack(c, g, held.map((m) => m.receipt)), 200), { acked: 0, stale: held.map((m) => m.receipt) });
    } finally {
      for (const p of peers) await p.close();
    }
  });
});

// ---------------------------------------------------------------- metrics

test('/metrics counts acknowledgements in sluice_group_commit_to_ack_seconds', { timeout: 120000 }, async () => {
  await withSluice('consume-metrics', async ({ c, prefix }) => {
    const g = await newGroup(c, prefix, { name: 'timed', ack_timeout_ms: 30000 });
    await publishN(c, g.type, 3);
    const ms = await fetchN(c, g, 'w1', 3);
    assert.deepEqual(h.assertStatus(await ack(c, g, ms.map((m) => m.receipt)), 200), { acked: 3, stale: [] });
    const res = await c.get('/metrics');
    assert.equal(res.status, 200, h.describeRes(res));
    const lines = res.text.split('\n');
    const count = lines.map((l) => /^sluice_group_commit_to_ack_seconds_count\{([^}]*)\} (\d+)$/.exec(l)).filter(Boolean)
      .map(([, labels, n]) => ({ labels: Object.fromEntries([...labels.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]])), n: Number(n) }))
      .find((x) => x.labels.stream === g.stream && x.labels.group === g.group);
    assert.ok(count, `a count for the group in:\n${lines.filter((l) => l.includes('commit_to_ack')).join('\n')}`);
    assert.equal(count.labels.tenant, 'default');
    assert.equal(count.n, 3, 'one observation per acknowledged message');
    assert.match(res.text, /^# TYPE sluice_group_commit_to_ack_seconds histogram$/m);
  });
});
