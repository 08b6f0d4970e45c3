'use strict';
// Issue 2: a 201 is durable — kill -9 of sluice while 8 clients publish loses no event that got
// a 201; SIGTERM while requests are in flight drains them, exits 0, and loses none either.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const cleanups = [];
after(async () => { for (const f of cleanups.reverse()) await f(); });

const WRITERS = 8;

// Runs WRITERS concurrent publishers against `sluice` until they are told to stop or the
// server goes away. Odd writers send atomic batches of 5 on their own key, even ones singles.
// Returns {acked: Map id → ack, statuses: {code: count}, done: Promise, stop()}.
function startWriters(sluice, tag) {
  const c = sluice.client();
  const acked = new Map();
  const statuses = {};
  // termAt: when the server was told to go; inFlightLost: requests sent before that which got
  // no HTTP answer at all (connection reset), which a graceful drain must not do.
  const state = { stopping: false, serverGone: false, termAt: Infinity, errors: [], inFlightLost: [] };
  const writer = async (w) => {
    for (let n = 0; !state.stopping; n++) {
      const batch = w % 2 === 1;
      const envs = batch
        ? Array.from({ length: 5 }, (_, j) => ({ id: `${tag}-w${w}-${n}-${j}`, type: 'crash.written', data: { w, n, j }, key: `${tag}-w${w}` }))
        : [{ id: `${tag}-w${w}-${n}`, type: 'crash.written', data: { w, n } }];
      let r;
      const sentAt = Date.now();
      try {
        r = await c.publish(batch ? envs : envs[0], { timeout: 20000 });
      } catch (e) {
        if (sentAt < state.termAt) state.inFlightLost.push(`${envs[0].id}: ${e.cause ? e.cause.code || e.cause : e}`);
        if (state.serverGone) return; // connection refused/reset after kill or exit: expected
        state.errors.push(e);
        return;
      }
      statuses[r.status] = (statuses[r.status] || 0) + 1;
      if (r.status === 201) {
        const acks = batch ? r.body.events : [r.body];
        acks.forEach((a, j) => acked.set(envs[j].id, { ...a, writer: w }));
      } else if (!state.serverGone) {
        state.errors.push(new Error(`unexpected answer while serving: ${h.describeRes(r)}`));
      }
    }
  };
  const done = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
  return { acked, statuses, state, done };
}

async function verifyDurable(dbUrl, acked, tag, name) {
  const s2 = await h.startSluice({ name, dbUrl });
  cleanups.push(() => s2.cleanup());
  const c = s2.client();
  const ids = [...acked.keys()];
  for (let i = 0; i < ids.length; i += 16) {
    await Promise.all(ids.slice(i, i + 16).map(async (id) => {
      const r = await c.get('/v1/events/' + encodeURIComponent(id));
      assert.equal(r.status, 200, `event ${id} got a 201 but is gone after restart: ${h.describeRes(r)}`);
      const a = acked.get(id);
      assert.equal(r.body.position, a.position, `${id} position`);
      assert.equal(r.body.version, a.version, `${id} version`);
    }));
  }
  // stored history: gap-free positions, per-key versions 1..N (batches all-or-nothing)
  const { events } = await h.readAllPages(c, { type: 'crash.written' }, { limit: 1000 });
  assert.ok(events.length >= acked.size);
  for (let i = 1; i < events.length; i++) assert.equal(events[i].position, events[i - 1].position + 1, 'no gap in positions');
  const byKey = new Map();
  for (const e of events) if (e.key) byKey.set(e.key, [...(byKey.get(e.key) || []), e.version]);
  for (const [k, vs] of byKey) {
    assert.deepEqual(vs, Array.from({ length: vs.length }, (_, i) => i + 1), `versions of ${k}`);
    assert.equal(vs.length % 5, 0, `batches on ${k} are all-or-nothing`);
  }
  const info = h.assertStatus(await c.get('/v1/info'), 200);
  assert.equal(info.head_position, events[events.length - 1].position);
  // and it goes on
  const next = await c.publish({ type: 'crash.after', data: {} });
  h.assertStatus(next, 201);
  assert.equal(next.body.position, info.head_position + 1);
  await s2.stop();
}

test('kill -9 while 8 clients publish: every event that got a 201 is readable after restart', { timeout: 240000 }, async () => {
  const db = await h.freshDatabase();
  cleanups.push(async () => db.drop());
  const s1 = await h.startSluice({ name: 'crash-kill', dbUrl: db.url });
  cleanups.push(() => s1.cleanup());
  const tag = 'k' + h.rand(3);
  const w = startWriters(s1, tag);
  await h.waitFor(() => w.acked.size >= 400 || w.state.errors.length, { timeout: 90000, what: '400 acknowledged events' });
  assert.deepEqual(w.state.errors.map(String), [], 'no errors before the kill');
  w.state.serverGone = true;
  await s1.kill9();
  w.state.stopping = true;
  await w.done;
  assert.deepEqual(w.state.errors.map(String), []);
  assert.ok(w.acked.size >= 400);
  await verifyDurable(db.url, w.acked, tag, 'crash-kill-restart');
});

test('SIGTERM while requests are in flight: exit code 0 and every 201 is durable', { timeout: 240000 }, async () => {
  const db = await h.freshDatabase();
  cleanups.push(async () => db.drop());
  const s1 = await h.startSluice({ name: 'crash-term', dbUrl: db.url });
  cleanups.push(() => s1.cleanup());
  const tag = 't' + h.rand(3);
  const w = startWriters(s1, tag);
  await h.waitFor(() => w.acked.size >= 300 || w.state.errors.length, { timeout: 90000, what: '300 acknowledged events' });
  assert.deepEqual(w.state.errors.map(String), [], 'no errors before SIGTERM');
  const ackedAtTerm = w.acked.size;
  w.state.serverGone = true; // from now on refused connections are expected, and 503s are allowed
  w.state.termAt = Date.now();
  const exit = await s1.stop(); // SIGTERM, asserts exit code 0 within the bound
  assert.equal(exit.code, 0);
  w.state.stopping = true;
  await w.done;
  const bad = Object.keys(w.statuses).filter((k) => k !== '201' && k !== '503');
  assert.deepEqual(bad, [], `during drain only 201 or 503: ${JSON.stringify(w.statuses)}`);
  assert.deepEqual(w.state.inFlightLost, [], 'every request sent before SIGTERM got an HTTP answer');
  assert.ok(w.acked.size >= ackedAtTerm);
  await verifyDurable(db.url, w.acked, tag, 'crash-term-restart');
});
