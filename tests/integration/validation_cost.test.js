'use strict';
// Issue 13: bounded validation. A schema whose pattern backtracks catastrophically (^(a+)+$)
// is registered; bodies built to make every string cost the most are refused with 422
// `validation_too_costly` naming the limit (one budget per request, shared by the events of a
// batch, atomic or not), nothing of them is stored, the validate endpoint is bounded the same
// way, ordinary events of the type still publish, and /health stays responsive while two
// clients send such bodies back to back. The /health bound asserted here is generous (2 s) so
// the test is not flaky on a loaded machine; bench/validation_attack measures the real p99.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const STEPS = 5000000; // SLUICE_VALIDATION_MAX_STEPS's default
const NODES = 1000000; // SLUICE_VALIDATION_MAX_NODES's default

let s;
let admin;
let publisher; // a publish-only key: the attack needs nothing more
const TYPE = `x${h.rand(4)}.names.listed`;
const BAD = 'a'.repeat(29) + '!'; // ^(a+)+$ tries 2^29 ways to split it, then fails
const MAX_BODY = 4 * 1024 * 1024;

before(async () => {
  s = await h.startSluice({ name: 'validation-cost', env: { SLUICE_ALLOW_UNKNOWN_TYPES: '0' } });
  admin = s.client();
  const key = await h.createKey(s, 'default', ['publish'], 'attacker');
  publisher = s.client(key.token);
  const res = await admin.post('/v1/schemas', {
    type: TYPE,
    schema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      properties: { names: { type: 'array', items: { type: 'string', pattern: '^(a+)+$' } } },
      required: ['names'],
    },
  });
  h.assertStatus(res, 201);
});
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

// One event whose `names` fill the body up to about `bytes`.
function bigEvent(bytes = MAX_BODY - 4096) {
  const n = Math.floor(bytes / (BAD.length + 3));
  return { type: TYPE, data: { names: new Array(n).fill(BAD) } };
}
// A full batch of small events, one bad name each: today's validator spent PCRE2's whole
// match limit on every one of them (no list of violations filled up to stop it).
function badBatch(n = 1000) {
  return Array.from({ length: n }, () => ({ type: TYPE, data: { names: [BAD] } }));
}

function assertTooCostly(res, { index } = {}) {
  const p = h.assertProblem(res, 422, 'validation_too_costly');
  assert.equal(p.limit, 'SLUICE_VALIDATION_MAX_STEPS', JSON.stringify(p));
  assert.equal(p.max, STEPS, JSON.stringify(p));
  assert.match(p.detail, /SLUICE_VALIDATION_MAX_STEPS/);
  assert.ok(Array.isArray(p.errors) && p.errors.length === 1, `one entry: ${JSON.stringify(p)}`);
  const e = p.errors[0];
  assert.equal(e.keyword, 'max_steps', JSON.stringify(e));
  if (index !== undefined) assert.equal(e.index, index, JSON.stringify(e));
  return p;
}

async function storedOfType() {
  const res = h.assertStatus(await admin.get('/v1/events?type=' + encodeURIComponent(TYPE)), 200);
  return res.events.length;
}

test('ordinary events of the type still publish', async () => {
  const res = await publisher.publish({ type: TYPE, data: { names: ['a', 'aaaa', 'a'.repeat(200)] } });
  h.assertStatus(res, 201);
  const bad = await publisher.publish({ type: TYPE, data: { names: ['ab'] } });
  h.assertProblem(bad, 422, 'schema_violation');
});

test('a 4 MiB event of worst-case strings → 422 validation_too_costly, promptly, nothing stored', async () => {
  const before = await storedOfType();
  const body = bigEvent();
  assert.ok(JSON.stringify(body).length < MAX_BODY);
  const t0 = Date.now();
  const res = await publisher.publish(body);
  const ms = Date.now() - t0;
  const p = assertTooCostly(res, { index: 0 });
  assert.match(p.errors[0].path, /^\/data\/names\/\d+$/, JSON.stringify(p.errors[0]));
  assert.ok(ms < 5000, `answered in ${ms} ms`);
  assert.equal(await storedOfType(), before, 'nothing stored');
});

test('the events of a batch share one budget: atomic or not, the request is refused', async () => {
  const before = await storedOfType();
  // alone, each event is a schema_violation ("too expensive to evaluate on this value")
  const one = await publisher.publish(badBatch(1)[0]);
  const p1 = h.assertProblem(one, 422, 'schema_violation');
  assert.equal(p1.errors[0].keyword, 'pattern', JSON.stringify(p1));
  for (const atomic of ['true', 'false']) {
    const res = await publisher.post('/v1/events?atomic=' + atomic, badBatch());
    const p = assertTooCostly(res);
    assert.ok(p.errors[0].index > 0 && p.errors[0].index < 999,
      `atomic=${atomic}: stopped part of the way through the batch: ${JSON.stringify(p.errors[0])}`);
  }
  // a good event in front of the bad ones is not stored either
  const mixed = [{ type: TYPE, data: { names: ['a'] } }, ...badBatch(999)];
  assertTooCostly(await publisher.post('/v1/events?atomic=false', mixed));
  assert.equal(await storedOfType(), before, 'nothing stored');
});

test('the validate endpoint is bounded the same way', async () => {
  const res = await admin.post(`/v1/schemas/${TYPE}/validate`, bigEvent(1024 * 1024).data);
  assertTooCostly(res);
  const ok = h.assertStatus(await admin.post(`/v1/schemas/${TYPE}/validate`, { names: ['aa'] }), 200);
  assert.equal(ok.valid, true);
});

test('a legitimate full batch is far inside the budget', async () => {
  const events = Array.from({ length: 1000 }, (_, i) => ({
    type: TYPE, data: { names: ['a'.repeat(1 + (i % 50)), 'aa', 'aaa'] } }));
  const res = await publisher.publish(events);
  h.assertStatus(res, 201);
  assert.equal(res.body.events.length, 1000);
  assert.ok(NODES > 1000 * 5 * 10, 'nodes: an order of magnitude to spare');
});

test('/health stays responsive while two clients send worst-case bodies', async () => {
  const DURATION_MS = 4000;
  const stopAt = Date.now() + DURATION_MS;
  const answers = {};
  async function attacker(body) {
    const text = JSON.stringify(body);
    while (Date.now() < stopAt) {
      const res = await publisher.request('POST', '/v1/events', {
        body: text, headers: { 'Content-Type': 'application/json' } });
      answers[res.status + ' ' + (res.body && res.body.code)] =
        (answers[res.status + ' ' + (res.body && res.body.code)] || 0) + 1;
    }
  }
  const latencies = [];
  async function prober() {
    await h.sleep(200); // the attack is under way
    while (Date.now() < stopAt) {
      const t0 = process.hrtime.bigint();
      const res = await s.client(null).get('/health');
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      assert.equal(res.status, 200, `/health: ${res.status} ${res.text}`);
      await h.sleep(20);
    }
  }
  await Promise.all([attacker(badBatch()), attacker(bigEvent()), prober()]);
  latencies.sort((a, b) => a - b);
  const q = (f) => latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))];
  const summary = `/health under attack: ${latencies.length} probes, p50 ${q(0.5).toFixed(1)} ms, ` +
    `p99 ${q(0.99).toFixed(1)} ms, max ${latencies[latencies.length - 1].toFixed(1)} ms; ` +
    `attack answers ${JSON.stringify(answers)}`;
  console.log(summary);
  assert.ok(latencies.length >= 10, summary);
  assert.deepEqual(Object.keys(answers), ['422 validation_too_costly'], summary);
  assert.ok(latencies[latencies.length - 1] < 2000, summary);
});
