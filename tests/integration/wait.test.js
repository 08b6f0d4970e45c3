'use strict';
// Issue 4: the long poll for request/response, `GET /v1/events/wait?correlation_id=&type=&after=
// &timeout_ms=` (API.md "Reading and replay"; seed 001): 200 with the first matching stored event
// (already stored, or arriving while waiting), 204 on timeout (timeout_ms ≤ 60000, default
// 30000), scope read, tenant isolation, and many waiters at once without holding the HTTP
// server's threads.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

let s;
let c;
before(async () => { s = await h.startSluice({ name: 'wait' }); c = s.client(); });
after(async () => { if (s) await s.stop().finally(() => s.cleanup()); });

const corr = () => 'corr-' + h.rand(6);
const tp = () => 'w' + h.rand(4);

async function pub(cl, env) {
  const r = await cl.publish(env);
  h.assertStatus(r, 201);
  return Array.isArray(env) ? r.body.events : r.body;
}

function wait(cl, q, timeout = 70000) {
  return cl.get('/v1/events/wait?' + new URLSearchParams(q), { timeout });
}

async function assertStoredAnswer(res, id) {
  h.assertStatus(res, 200);
  assert.match(res.contentType, /^application\/json/);
  assert.equal(res.body.id, id, `the answer is event ${id}: ${res.text.slice(0, 300)}`);
  const stored = h.assertStatus(await c.get('/v1/events/' + encodeURIComponent(id)), 200);
  assert.deepEqual(res.body, stored, 'the answer is the stored envelope');
}

describe('auth', () => {
  test('401 without a valid token; 403 without the read scope; a read key works', async () => {
    const cid = corr();
    h.assertProblem(await wait(c.withToken(null), { correlation_id: cid, timeout_ms: 100 }), 401, 'unauthenticated');
    h.assertProblem(await wait(c.withToken('nope'), { correlation_id: cid, timeout_ms: 100 }), 401, 'unauthenticated');
    for (const scopes of [['publish'], ['subscribe']]) {
      const k = await h.createKey(s, 'default', scopes);
      h.assertProblem(await wait(c.withToken(k.token), { correlation_id: cid, timeout_ms: 100 }), 403, 'forbidden');
    }
    const ro = await h.createKey(s, 'default', ['read']);
    const e = await pub(c, { type: `${tp()}.x`, data: {}, correlation_id: cid });
    await assertStoredAnswer(await wait(c.withToken(ro.token), { correlation_id: cid, timeout_ms: 5000 }), e.id);
  });
});

describe('answers', () => {
  test('an already stored match answers at once', async () => {
    const cid = corr();
    const t = tp();
    const e = await pub(c, { type: `${t}.reply`, data: { ok: true }, correlation_id: cid, user_id: 'u1', key: 'k' });
    // with the longest timeout: had the stored event been ignored, this would be a 204 a minute later
    const t0 = Date.now();
    const r = await wait(c, { correlation_id: cid, timeout_ms: 60000 });
    await assertStoredAnswer(r, e.id);
    assert.ok(Date.now() - t0 < 30000, 'answered long before the timeout');
  });

  test('a match published during the wait answers the waiter; non-matching events do not', async () => {
    const cid = corr();
    const t = tp();
    const t0 = Date.now();
    const pending = wait(c, { correlation_id: cid, type: `${t}.reply`, timeout_ms: 30000 });
    let settled = false;
    pending.then(() => { settled = true; }, () => { settled = true; });
    await h.sleep(300);
    await pub(c, { type: `${t}.reply`, data: {}, correlation_id: corr() });          // other correlation
    await pub(c, { type: `${t}.request`, data: {}, correlation_id: cid });           // other type
    await pub(c, { type: `${t}.reply.extra`, data: {}, correlation_id: cid });       // not the exact type
    await h.sleep(300);
    assert.equal(settled, false, 'non-matching events do not answer the waiter');
    const match = await pub(c, { type: `${t}.reply`, data: { answer: 42 }, correlation_id: cid, causation_id: 'req-1' });
    const r = await pending;
    await assertStoredAnswer(r, match.id);
    assert.ok(Date.now() - t0 < 30000, 'answered before the timeout');
  });

  test('the live path applies every filter of the stored lookup: user_id, since/until, all types', async () => {
    const cid = corr();
    const t = tp();
    // user_id: alice's waiter is not answered by bob's event that arrives live
    const alice = wait(c, { correlation_id: cid, user_id: 'alice', timeout_ms: 30000 });
    let settled = false;
    alice.then(() => { settled = true; }, () => { settled = true; });
    await h.sleep(300);
    await pub(c, { type: `${t}.reply`, data: {}, correlation_id: cid, user_id: 'bob' });
    await pub(c, { type: `${t}.reply`, data: {}, correlation_id: cid });
    await h.sleep(300);
    assert.equal(settled, false, "bob's event (and one without a user) do not answer alice's waiter");
    const hers = await pub(c, { type: `${t}.reply`, data: {}, correlation_id: cid, user_id: 'alice' });
    await assertStoredAnswer(await alice, hers.id);

    // until: a waiter bounded to the past is not answered by an event committed now
    const cid2 = corr();
    const past = new Date(Date.now() - 60000).toISOString();
    const bounded = wait(c, { correlation_id: cid2, until: past, timeout_ms: 1500 });
    await h.sleep(300);
    await pub(c, { type: `${t}.reply`, data: {}, correlation_id: cid2 });
    assert.equal((await bounded).status, 204, 'an event committed after until does not answer');
    // since: a waiter from the future is not answered by an event committed now
    const future = new Date(Date.now() + 3600000).toISOString();
    const later = wait(c, { correlation_id: cid2, since: future, timeout_ms: 1500 });
    await h.sleep(300);
    await pub(c, { type: `${t}.reply`, data: {}, correlation_id: cid2 });
    assert.equal((await later).status, 204, 'an event committed before since does not answer');

    // every type: the 20th type of a 20-type list answers live
    const cid3 = corr();
    const types = Array.from({ length: 20 }, (_, i) => `${t}.t${i}`);
    const many = wait(c, { correlation_id: cid3, type: types.join(','), timeout_ms: 30000 });
    await h.sleep(300);
    const last = await pub(c, { type: types[19], data: {}, correlation_id: cid3 });
    await assertStoredAnswer(await many, last.id);
  });

  test('a long poll that finds a stored match gives its PostgreSQL connection back to the pool', async () => {
    const cid = corr();
    const e = await pub(c, { type: `${tp()}.reply`, data: {}, correlation_id: cid });
    await assertStoredAnswer(await wait(c, { correlation_id: cid, timeout_ms: 5000 }), e.id);
    const backends = () => h.psql(s.dbUrl, "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity " +
      "WHERE datname = current_database() AND application_name = 'sluice' AND pid <> pg_backend_pid()");
    const before = backends();
    for (let i = 0; i < 20; i++) await assertStoredAnswer(await wait(c, { correlation_id: cid, timeout_ms: 5000 }), e.id);
    assert.equal(backends(), before, 'no PostgreSQL connection was dropped and opened again');
  });

  test('204 with no body on timeout (timeout_ms=300)', async () => {
    const t0 = Date.now();
    const r = await wait(c, { correlation_id: corr(), timeout_ms: 300 }, 20000);
    const ms = Date.now() - t0;
    assert.equal(r.status, 204, h.describeRes(r));
    assert.equal(r.text, '', 'no body');
    assert.ok(ms >= 250, `not before the timeout: ${ms} ms`);
  });

  test('timeout_ms=0 answers at once: 204 with nothing stored, 200 with a stored match', async () => {
    const cid = corr();
    assert.equal((await wait(c, { correlation_id: cid, timeout_ms: 0 }, 20000)).status, 204);
    const e = await pub(c, { type: `${tp()}.x`, data: {}, correlation_id: cid });
    await assertStoredAnswer(await wait(c, { correlation_id: cid, timeout_ms: 0 }, 20000), e.id);
  });

  test('several stored matches: the answer is the first (lowest position), also right after they were committed', async () => {
    // Asked right after the 201s, the matches may still be on their way to the live feed while
    // the store lookup runs: the answer must still be the first, never a later live one.
    const wrong = [];
    for (let round = 0; round < 30; round++) {
      const cid = corr();
      const t = tp();
      const evs = [];
      for (let i = 0; i < 3; i++) evs.push(await pub(c, { type: `${t}.a`, data: { n: i }, correlation_id: cid }));
      const [r1, r2] = await Promise.all([
        wait(c, { correlation_id: cid, timeout_ms: 5000 }),
        wait(c, { correlation_id: cid, type: `${t}.a`, timeout_ms: 5000 }),
      ]);
      for (const r of [r1, r2]) {
        h.assertStatus(r, 200);
        if (r.body.id !== evs[0].id) wrong.push(`round ${round}: got position ${r.body.position}, the first match is ${evs[0].position} (matches ${evs.map((e) => e.position)})`);
      }
    }
    assert.deepEqual(wrong, [], 'every answer is the first match');
  });

  test('after= skips matches at or below it; past the last match it waits for a new one', async () => {
    const cid = corr();
    const t = tp();
    const e1 = await pub(c, { type: `${t}.a`, data: { n: 1 }, correlation_id: cid });
    const e2 = await pub(c, { type: `${t}.b`, data: { n: 2 }, correlation_id: cid });
    const e3 = await pub(c, { type: `${t}.a`, data: { n: 3 }, correlation_id: cid });
    await assertStoredAnswer(await wait(c, { correlation_id: cid, after: e1.position, timeout_ms: 5000 }), e2.id);
    await assertStoredAnswer(await wait(c, { correlation_id: cid, type: `${t}.a`, after: e1.position, timeout_ms: 5000 }), e3.id);
    await assertStoredAnswer(await wait(c, { correlation_id: cid, type: `${t}.*`, after: e2.position, timeout_ms: 5000 }), e3.id);
    // after the last one: wait for a new one
    const pending = wait(c, { correlation_id: cid, after: e3.position, timeout_ms: 30000 });
    await h.sleep(300);
    const e4 = await pub(c, { type: `${t}.c`, data: { n: 4 }, correlation_id: cid });
    await assertStoredAnswer(await pending, e4.id);
    assert.equal((await wait(c, { correlation_id: cid, after: e4.position, timeout_ms: 300 }, 20000)).status, 204);
  });

  test('a match inside a batch answers the waiter', async () => {
    const cid = corr();
    const t = tp();
    const pending = wait(c, { correlation_id: cid, timeout_ms: 30000 });
    await h.sleep(300);
    const evs = await pub(c, [{ type: `${t}.x`, data: {} }, { type: `${t}.y`, data: {}, correlation_id: cid }, { type: `${t}.z`, data: {}, correlation_id: cid }]);
    await assertStoredAnswer(await pending, evs[1].id);
  });

  test('bad parameters → 400 problem', async () => {
    for (const q of [{ correlation_id: corr(), timeout_ms: 60001 }, { correlation_id: corr(), timeout_ms: 'soon' }, { correlation_id: corr(), timeout_ms: -1 }, { correlation_id: corr(), after: 'x', timeout_ms: 100 }]) {
      const r = await wait(c, q, 20000);
      assert.equal(r.status, 400, `${JSON.stringify(q)}: ${h.describeRes(r)}`);
      assert.match(r.contentType, /^application\/problem\+json/);
    }
  });
});

describe('isolation and scale', () => {
  test("tenant isolation: tenant B's waiter is never answered with tenant A's event", async () => {
    const kb = await h.createKey(s, 'tenant-wait-b', ['publish', 'read']);
    const B = s.client(kb.token);
    const cid = corr();
    const t = tp();
    const aOld = await pub(c, { type: `${t}.x`, data: { who: 'A' }, correlation_id: cid });
    // a stored A event does not answer B
    assert.equal((await wait(B, { correlation_id: cid, timeout_ms: 300 }, 20000)).status, 204, 'B does not see A\'s stored event');
    // nor does a live one
    const pendingB = wait(B, { correlation_id: cid, timeout_ms: 30000 });
    let settled = false;
    pendingB.then(() => { settled = true; }, () => { settled = true; });
    await h.sleep(300);
    const aNew = await pub(c, { type: `${t}.x`, data: { who: 'A' }, correlation_id: cid });
    await h.sleep(500);
    assert.equal(settled, false, "A's live event does not answer B");
    const bEv = await pub(B, { type: `${t}.x`, data: { who: 'B' }, correlation_id: cid });
    const r = await pendingB;
    h.assertStatus(r, 200);
    assert.equal(r.body.id, bEv.id);
    assert.equal(r.body.tenant_id, 'tenant-wait-b');
    // and A's waiter gets A's event, not B's
    const ra = await wait(c, { correlation_id: cid, after: aOld.position, timeout_ms: 5000 });
    assert.equal(h.assertStatus(ra, 200).id, aNew.id);
  });

  test('100 concurrent waiters: the server keeps answering other requests, and each waiter gets its own event', { timeout: 180000 }, async () => {
    const t = tp();
    const N = 100;
    const cids = Array.from({ length: N }, corr);
    const pending = cids.map((cid) => wait(c, { correlation_id: cid, timeout_ms: 60000 }, 90000));
    await h.sleep(500);
    // waiters hold no HTTP thread: other requests still answer
    for (let i = 0; i < 5; i++) {
      h.assertStatus(await c.get('/health', { token: null, timeout: 10000 }), 200);
      h.assertStatus(await c.get('/v1/info', { timeout: 10000 }), 200);
      await pub(c, { type: `${t}.noise`, data: { i } });
    }
    const sent = await pub(c, cids.map((cid, i) => ({ type: `${t}.reply`, data: { i }, correlation_id: cid })));
    const answers = await Promise.all(pending);
    answers.forEach((r, i) => {
      h.assertStatus(r, 200);
      assert.equal(r.body.id, sent[i].id, `waiter ${i} got its own reply`);
    });
  });

  test('waiters that disconnect early leave the server healthy', { timeout: 120000 }, async () => {
    const ctrls = [];
    const pending = [];
    for (let i = 0; i < 30; i++) {
      const ctrl = new AbortController();
      ctrls.push(ctrl);
      pending.push(fetch(`${s.url}/v1/events/wait?correlation_id=${corr()}&timeout_ms=60000`, {
        headers: { Authorization: `Bearer ${s.adminToken}` }, signal: ctrl.signal,
      }).then((r) => r.text(), () => 'aborted'));
    }
    await h.sleep(500);
    for (const ctrl of ctrls) ctrl.abort();
    await Promise.all(pending);
    await h.sleep(300);
    const cid = corr();
    const e = await pub(c, { type: `${tp()}.x`, data: {}, correlation_id: cid });
    await assertStoredAnswer(await wait(c, { correlation_id: cid, timeout_ms: 5000 }), e.id);
    h.assertStatus(await c.get('/health', { token: null }), 200);
  });
});

test('SIGTERM with waiters pending: sluice exits 0 and the waiters get an answer', { timeout: 120000 }, async () => {
  const t = await h.startSluice({ name: 'wait-term' });
  try {
    const pending = Array.from({ length: 5 }, () => wait(t.client(), { correlation_id: corr(), timeout_ms: 60000 }, 90000).then((r) => r, (e) => e));
    await h.sleep(500);
    await t.stop();
    for (const r of await Promise.all(pending)) {
      // an answer of any kind (204, 503) or a closed connection; never a hang
      assert.ok(r instanceof Error || [200, 204, 503].includes(r.status), `a waiter got ${r instanceof Error ? r.message : r.status}`);
    }
  } finally {
    await t.cleanup();
  }
});
