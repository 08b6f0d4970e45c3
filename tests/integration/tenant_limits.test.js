'use strict';
// Issue 13 ("Sealed tenants"), per-tenant limits (API.md "Tenants"): small caps set at start
// (SLUICE_TENANT_WS_CONNECTIONS, SLUICE_TENANT_STREAMS for SSE and NDJSON together,
// SLUICE_TENANT_LONG_POLLS, SLUICE_TENANT_CATCHUPS, SLUICE_TENANT_REPLAYS). For each: the
// cap's worth is accepted, the next one is 429 `rate_limited` with Retry-After (a WebSocket
// upgrade with ?token= likewise; a WebSocket authenticating by message gets an error frame
// rate_limited and close 1013; a catch-up asked for in a subscribe message gets an error
// frame rate_limited on an open connection), another tenant is unaffected at the same moment,
// and a slot comes back when what held it ends.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const { Peer, Stream, publishBulk } = require('./lib/sealed');
const { deletePrefix } = require('../lib/redis.js');

const CAP_WS = 2;
const CAP_STREAMS = 2;
const CAP_POLLS = 2;
const CAP_CATCHUPS = 1;
const CAP_REPLAYS = 1;

// Opens a WebSocket, retrying while the tenant's slots are still held by connections an
// earlier test closed (the server frees a slot once it has seen the close).
function openWs(s, token) {
  return h.waitFor(() => Peer.open(s, { token }).catch((e) => { if (e.status === 429) return null; throw e; }),
    { timeout: 5000, what: 'a WebSocket slot' });
}

function assertRateLimited(res, what) {
  h.assertProblem(res, 429, 'rate_limited');
  const ra = res.headers.get('retry-after');
  assert.ok(ra && Number(ra) >= 1, `${what}: Retry-After ${ra}`);
}

describe('per-tenant limits', () => {
  let s;
  let one; // tenant 1: keys
  let two; // tenant 2
  const redisPrefix = `ittl${h.rand(4)}:`;
  before(async () => {
    s = await h.startSluice({
      name: 'tenant-limits',
      env: {
        SLUICE_TENANT_WS_CONNECTIONS: String(CAP_WS),
        SLUICE_TENANT_STREAMS: String(CAP_STREAMS),
        SLUICE_TENANT_LONG_POLLS: String(CAP_POLLS),
        SLUICE_TENANT_CATCHUPS: String(CAP_CATCHUPS),
        SLUICE_TENANT_REPLAYS: String(CAP_REPLAYS),
        SLUICE_REDIS_PREFIX: redisPrefix,
        // A small queue, so a catch-up whose reader pauses waits (holding its slot) early.
        SLUICE_WS_QUEUE_MESSAGES: '64',
        SLUICE_WS_QUEUE_BYTES: '65536',
      },
    });
    const scopes = ['publish', 'read', 'subscribe', 'admin'];
    one = { tenant: 'tl1' + h.rand(3) };
    two = { tenant: 'tl2' + h.rand(3) };
    for (const t of [one, two]) {
      t.key = await h.createKey(s, t.tenant, scopes);
      t.c = s.client(t.key.token);
      t.prefix = 'p' + h.rand(4);
    }
  });
  after(async () => {
    if (s) await s.stop().finally(() => s.cleanup());
    if (process.env.SLUICE_REDIS_URL) await deletePrefix(process.env.SLUICE_REDIS_URL, redisPrefix).catch(() => {});
  });

  test('WebSocket connections: the cap, then 429 at the upgrade (or rate_limited + 1013 by message); another tenant unaffected; a closed one frees its slot', async () => {
    const mine = [];
    for (let i = 0; i < CAP_WS; i++) mine.push(await Peer.open(s, { token: one.key.token }));
    let err = null;
    try { (await Peer.open(s, { token: one.key.token })).close(); } catch (e) { err = e; }
    assert.ok(err && err.status === 429, `the upgrade past the cap: ${err && err.message}`);
    assert.ok(Number(err.headers['retry-after']) >= 1, `Retry-After: ${JSON.stringify(err.headers)}`);
    assert.equal(JSON.parse(err.body).code, 'rate_limited');
    // By first message: an error frame, then 1013.
    const byMsg = await Peer.open(s, {});
    byMsg.send({ op: 'auth', token: one.key.token });
    const e = await byMsg.until((m) => m.op === 'error', 'an error frame');
    assert.equal(e.code, 'rate_limited', JSON.stringify(e));
    assert.equal((await byMsg.waitClose())?.code, 1013);
    // Another tenant at the same moment.
    const theirs = await Peer.open(s, { token: two.key.token });
    assert.equal((await theirs.subscribe({ id: 'x' })).op, 'subscribed');
    theirs.close();
    // A closed connection gives its slot back.
    mine[0].close();
    await mine[0].waitClose();
    const again = await h.waitFor(async () => Peer.open(s, { token: one.key.token }).catch(() => null),
      { timeout: 5000, what: 'a slot after a close' });
    assert.equal((await again.subscribe({ id: 'y' })).op, 'subscribed');
    for (const p of [again, ...mine]) p.close();
    await Promise.all([again, ...mine].map((p) => p.waitClose()));
  });

  test('SSE and NDJSON streams share one cap: then 429 for either; another tenant unaffected; an ended stream frees its slot', async () => {
    const sse = `/v1/subscribe?type=${one.prefix}.*`;
    const held = [];
    for (let i = 0; i < CAP_STREAMS; i++) {
      const st = await Stream.open(s, sse, { token: one.key.token, accept: 'text/event-stream' });
      assert.equal(st.status, 200, st.text);
      held.push(st);
    }
    assertRateLimited(await one.c.get(sse, { headers: { Accept: 'text/event-stream' } }), 'SSE past the cap');
    assertRateLimited(await one.c.get(`/v1/events?type=${one.prefix}.x`, { headers: { Accept: 'application/x-ndjson' } }), 'NDJSON past the cap');
    // Pages are not streams.
    h.assertStatus(await one.c.get(`/v1/events?type=${one.prefix}.x`), 200);
    // Another tenant.
    const res = await two.c.get(`/v1/events?type=${two.prefix}.x`, { headers: { Accept: 'application/x-ndjson' } });
    h.assertStatus(res, 200);
    const theirs = await Stream.open(s, `/v1/subscribe?type=${two.prefix}.*`, { token: two.key.token, accept: 'text/event-stream' });
    assert.equal(theirs.status, 200, theirs.text);
    theirs.abort();
    // The client goes; the next event for the stream finds it gone and its thread ends.
    held[0].abort();
    await h.waitFor(async () => {
      h.assertStatus(await one.c.publish({ type: `${one.prefix}.tick`, data: {} }), 201);
      const st = await Stream.open(s, sse, { token: one.key.token, accept: 'text/event-stream' });
      if (st.status !== 200) return false;
      held[0] = st;
      return true;
    }, { timeout: 10000, interval: 200, what: 'a stream slot after a client left' });
    for (const st of held) st.abort();
  });

  test('long polls: the cap, then 429; another tenant unaffected; an answered poll frees its slot', async () => {
    const cid = (n) => `tl-${one.tenant}-${n}`;
    // The probe below holds a slot for a moment each time it is admitted: a poll that arrives
    // then is refused, and asks again (the probe is refused only once both polls are parked).
    const park = async (i) => {
      for (let tries = 1; ; tries++) {
        const r = await one.c.get(`/v1/events/wait?correlation_id=${cid(i)}&timeout_ms=30000`, { timeout: 40000 });
        if (r.status !== 429 || tries === 20) return r;
        await h.sleep(20);
      }
    };
    const polls = [];
    for (let i = 0; i < CAP_POLLS; i++) polls.push(park(i));
    // Both are parked once a third is refused (allow them a moment to arrive).
    const third = await h.waitFor(async () => {
      const r = await one.c.get(`/v1/events/wait?correlation_id=${cid(9)}&timeout_ms=0`);
      return r.status === 429 ? r : false;
    }, { timeout: 5000, interval: 50, what: 'a long poll past the cap to be refused' });
    assertRateLimited(third, 'long poll past the cap');
    h.assertStatus(await two.c.get(`/v1/events/wait?correlation_id=${cid(0)}&timeout_ms=100`), 204);
    // The first poll is answered by its event: its slot comes back.
    const pub = await one.c.publish({ type: `${one.prefix}.reply`, correlation_id: cid(0), data: {} });
    h.assertStatus(pub, 201);
    const first = await polls[0];
    h.assertStatus(first, 200);
    assert.equal(first.body.id, pub.body.id);
    h.assertStatus(await one.c.get(`/v1/events/wait?correlation_id=${cid(8)}&timeout_ms=100`), 204);
    // The other one ends too.
    h.assertStatus(await one.c.publish({ type: `${one.prefix}.reply`, correlation_id: cid(1), data: {} }), 201);
    h.assertStatus(await polls[1], 200);
  });

  test('history catch-ups: the cap, then rate_limited (error frame; 429 for SSE); another tenant unaffected; a closed reader frees its slot', { timeout: 180000 }, async () => {
    // History far larger than the queue and the socket buffers: a catch-up whose reader
    // pauses waits for room, holding its slot.
    await publishBulk(one.c, one.prefix, 5000);
    const slow = await openWs(s, one.key.token);
    slow.pauseReading();
    slow.send({ op: 'subscribe', id: 'h', from_position: 0 });
    await h.sleep(500);
    const probe = await openWs(s, one.key.token);
    const refused = await probe.subscribe({ id: 'h2', from_position: 0 });
    assert.equal(refused.op, 'error', JSON.stringify(refused));
    assert.equal(refused.code, 'rate_limited', JSON.stringify(refused));
    assert.equal(probe.closeInfo, null, 'the connection stays open');
    // A live subscription needs no catch-up.
    assert.equal((await probe.subscribe({ id: 'live' })).op, 'subscribed');
    // SSE resuming from a position: 429.
    assertRateLimited(await one.c.get(`/v1/subscribe?from_position=0&type=${one.prefix}.none`, { headers: { Accept: 'text/event-stream' } }), 'SSE catch-up past the cap');
    // Another tenant.
    const theirs = await Peer.open(s, { token: two.key.token });
    assert.equal((await theirs.subscribe({ id: 'h', from_position: 0 })).op, 'subscribed');
    theirs.close();
    // The slow reader goes: its catch-up stops and its slot comes back.
    slow.terminate();
    await h.waitFor(async () => (await probe.subscribe({ id: 'h' + h.rand(2), from_position: 0, types: [`${one.prefix}.none`] })).op === 'subscribed',
      { timeout: 10000, interval: 200, what: 'a catch-up slot after the reader left' });
    probe.close();
    await probe.waitClose();
  });

  test('running replays: the cap, then 429; another tenant unaffected; a cancelled one frees its slot', async () => {
    for (const t of [one, two]) {
      const batch = Array.from({ length: 20 }, (_, i) => ({ type: `${t.prefix}.r`, data: { i } }));
      h.assertStatus(await t.c.publish(batch), 201);
    }
    const create = (t) => t.c.post('/v1/replays', {
      filter: { type: `${t.prefix}.r` },
      target: { redis_stream: `${redisPrefix}${t.tenant}:rp${h.rand(3)}` },
      max_per_second: 1, // paced: it runs for a long while
    });
    const r1 = await create(one);
    h.assertStatus(r1, 202);
    assert.equal(r1.body.status, 'running');
    assertRateLimited(await create(one), 'a replay past the cap');
    const r2 = await create(two);
    h.assertStatus(r2, 202);
    h.assertStatus(await one.c.del('/v1/replays/' + r1.body.id), 200);
    h.assertStatus(await two.c.del('/v1/replays/' + r2.body.id), 200);
    const r3 = await create(one);
    h.assertStatus(r3, 202);
    h.assertStatus(await one.c.del('/v1/replays/' + r3.body.id), 200);
  });
});
