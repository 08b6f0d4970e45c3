'use strict';
// SIGKILL in the middle of a publish burst. Two instances, A and B, on one database and one
// Redis prefix take a continuous load (8 writers: singles with and without a client id,
// batches, keyed batches; every envelope's data carries a unique tag). A, the relay leader,
// is killed with SIGKILL mid-burst while B keeps taking writes, then restarted; later B,
// now the leader, is killed and restarted the same way. Asserted:
//   - every publish is answered 201 (a request caught by a kill gets no answer at all, and
//     may or may not be stored); every event answered 201 is stored exactly once, at the
//     position and with the id its 201 named; positions 1 … N have no hole; no request's
//     tag is stored twice;
//   - a subscriber on the survivor, connected before the kill, receives 1, 2, 3, … with no
//     gap, including what the dead instance committed just before it died;
//   - subscribers on the restarted instances with from_position get exactly (from, N];
//   - the Redis stream holds every stored event once, entry id <position>-0, none missing
//     or doubled, whichever instance relayed it.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const f = require('./lib/flow');
const { withRedis, xrangeAll, deletePrefix } = require('../lib/redis.js');

const WRITERS = 8;

test('SIGKILL of an instance mid-burst, then restart: 201 ⇒ stored once, subscribers gap-free, Redis exactly once', { timeout: 300000 }, async (t) => {
  const redisUrl = process.env.SLUICE_REDIS_URL;
  assert.ok(redisUrl, 'SLUICE_REDIS_URL names the suite Redis');
  const prefix = `itkb${h.rand(4)}:`;
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16);
  const env = { SLUICE_REDIS_URL: redisUrl, SLUICE_REDIS_PREFIX: prefix, SLUICE_WS_QUEUE_MESSAGES: '200000', SLUICE_WS_QUEUE_BYTES: String(512 << 20) };
  const handles = [];
  const subs = [];
  const start = async (name) => {
    const s = await h.startSluice({ name, dbUrl: db.url, adminToken, env });
    handles.push(s);
    return s;
  };
  const isLeader = async (s) => h.assertStatus(await s.client().get('/v1/info'), 200).relay_leader === true;
  const subscribe = async (s, sub) => { const x = await f.Subscriber.open(s, sub); subs.push(x); return x; };
  let load = null;
  try {
    const up = { A: await start('kb-a'), B: null };
    await h.waitFor(() => isLeader(up.A), { timeout: 30000, what: 'A to lead the relay' });
    up.B = await start('kb-b');
    const clients = { A: up.A.client(), B: up.B.client() };
    const instOf = (w) => (w % 2 ? 'B' : 'A');

    const bZero = await subscribe(up.B, { id: 'b-zero', from_position: 0 });
    const bLive = await subscribe(up.B, { id: 'b-live' });

    load = f.startLoad({
      writers: WRITERS,
      target: (w) => clients[instOf(w)],
      make: (w, n) => {
        const tag = `w${w}-${n}`;
        switch (n % 4) {
          case 0: return [{ type: 'kb.single', data: { tag } }];
          case 1: return [{ id: `id-${tag}`, type: 'kb.single', data: { tag } }];
          case 2: return Array.from({ length: 5 }, (_, j) => ({ id: `id-${tag}-${j}`, type: 'kb.batch', data: { tag: `${tag}-${j}` } }));
          default: return Array.from({ length: 3 }, (_, j) => ({ type: 'kb.keyed', stream: 'kb.keyed', key: `k${w}`, data: { tag: `${tag}-${j}` } }));
        }
      },
    });
    const noFailures = (what) => assert.deepEqual(load.failed.map((x) => `${x.tags[0]}: ${x.status} ${x.text}`), [], `every answer is a 201 (${what})`);

    // ---- kill A (the relay leader) in the middle of the burst
    await f.waitAcked(load, 600, { what: 'load before the first kill' });
    noFailures('before the first kill');
    clients.A = null;
    const lostBeforeKillA = load.lost.length;
    await up.A.kill9();
    const headAtKillA = f.headOf(db.url); // includes whatever A committed before it died
    await f.waitAcked(load, 400, { what: 'B taking writes while A is dead' });
    noFailures('while A is dead');
    assert.ok(load.lost.slice(lostBeforeKillA).every((x) => instOf(Number(x.tags[0].slice(1).split('-')[0])) === 'A'),
      `only A's requests went unanswered: ${JSON.stringify(load.lost.slice(lostBeforeKillA)).slice(0, 500)}`);
    // B's subscriber connected before the kill gets what A committed up to its death too.
    await bZero.waitPosition(headAtKillA);
    f.assertGapFree(bZero.positions(), 0, bZero.last(), 'b-zero after A died');
    await h.waitFor(() => isLeader(up.B), { timeout: 30000, what: 'B to take over the relay' });

    // ---- restart A; subscribers on it from 0 and from a mid position
    up.A = await start('kb-a2');
    clients.A = up.A.client();
    const a2Zero = await subscribe(up.A, { id: 'a2-zero', from_position: 0 });
    const midA = Math.floor(headAtKillA / 2);
    const a2Mid = await subscribe(up.A, { id: 'a2-mid', from_position: midA });
    await f.waitAcked(load, 600, { what: 'load through both after the restart of A' });
    noFailures('after the restart of A');

    // ---- kill B (now the leader) in the middle of the burst, restart it
    clients.B = null;
    const lostBeforeKillB = load.lost.length;
    await up.B.kill9();
    const headAtKillB = f.headOf(db.url);
    await f.waitAcked(load, 400, { what: 'A taking writes while B is dead' });
    noFailures('while B is dead');
    assert.ok(load.lost.slice(lostBeforeKillB).every((x) => instOf(Number(x.tags[0].slice(1).split('-')[0])) === 'B'),
      `only B's requests went unanswered: ${JSON.stringify(load.lost.slice(lostBeforeKillB)).slice(0, 500)}`);
    await a2Zero.waitPosition(headAtKillB);
    up.B = await start('kb-b2');
    clients.B = up.B.client();
    const midB = Math.floor(headAtKillB / 2) + 7;
    const b2Mid = await subscribe(up.B, { id: 'b2-mid', from_position: midB });
    await f.waitAcked(load, 400, { what: 'load through both after the restart of B' });
    await load.stop();
    noFailures('to the end');

    // ---- the store: 1 … N, every 201 once where it said, no request twice
    const rows = f.storedRows(db.url);
    const N = rows.length;
    f.assertStoreSane(rows);
    const byTag = new Map(rows.map((r) => [r.tag, r]));
    for (const [tag, ack] of load.acked) {
      const r = byTag.get(tag);
      assert.ok(r, `${tag} got a 201 (${ack.id} at ${ack.position}) but is not stored`);
      assert.equal(r.position, ack.position, `${tag}: stored at the position its 201 named`);
      assert.equal(r.id, ack.id, `${tag}: stored id`);
    }
    const lostTags = load.lost.flatMap((x) => x.tags);
    const unacked = rows.filter((r) => !load.acked.has(r.tag));
    assert.ok(unacked.every((r) => lostTags.includes(r.tag)), `every stored event was acknowledged or caught by a kill: ${JSON.stringify(unacked.filter((r) => !lostTags.includes(r.tag))).slice(0, 400)}`);
    const idAt = rows.map((r) => r.id);

    // ---- subscribers: exactly (start, N] (or, on the killed B, a gap-free prefix)
    for (const s of [a2Zero, a2Mid, b2Mid]) await s.waitPosition(N);
    await h.sleep(300);
    f.assertGapFree(a2Zero.positions(), 0, N, 'a2-zero (restarted A, from 0, through the kill of B)');
    f.assertGapFree(a2Mid.positions(), midA, N, `a2-mid (restarted A, from ${midA})`);
    f.assertGapFree(b2Mid.positions(), midB, N, `b2-mid (restarted B, from ${midB})`);
    assert.ok(bZero.last() >= headAtKillA);
    f.assertGapFree(bZero.positions(), 0, bZero.last(), 'b-zero (B, from 0, until B was killed)');
    f.assertGapFree(bLive.positions(), bLive.startPosition, bLive.last(), 'b-live (B, live, until B was killed)');
    assert.ok(bLive.last() >= headAtKillA, `b-live got past A's death (${bLive.last()} ≥ ${headAtKillA})`);
    for (const s of [a2Zero, a2Mid, b2Mid, bZero, bLive]) {
      s.events.forEach((e) => assert.equal(e.id, idAt[e.position - 1], `${s.sub.id}: the event at ${e.position} is the stored one`));
    }

    // ---- Redis: every stored event once, entry id <position>-0
    const streams = [...new Set(rows.map((r) => r.stream))];
    await withRedis(redisUrl, async (r) => {
      await h.waitFor(async () => {
        let n = 0;
        for (const s of streams) n += await r.xlen(prefix + s);
        return n >= N;
      }, { timeout: 60000, interval: 100, what: `${N} entries in Redis` });
      await h.sleep(300);
      for (const s of streams) {
        const entries = await xrangeAll(r, prefix + s);
        for (const e of entries) {
          assert.match(e.id, /^\d+-0$/, `${prefix}${s}: entry id ${e.id}`);
          assert.equal(e.fields.position, e.id.split('-')[0], `${prefix}${s} ${e.id}: position field`);
          assert.equal(e.fields.id, idAt[Number(e.id.split('-')[0]) - 1], `${prefix}${s} ${e.id}: the event stored at that position`);
        }
        f.assertExactly(entries.map((e) => Number(e.id.split('-')[0])), rows.filter((x) => x.stream === s).map((x) => x.position), `Redis ${prefix}${s}`);
      }
    });

    t.diagnostic(`${N} stored, ${load.acked.size} acknowledged, ${load.lost.length} requests unanswered at the kills (${unacked.length} of their events stored); A killed at head ${headAtKillA}, B at ${headAtKillB}`);
    for (const s of subs) await s.shut();
    await up.A.stop();
    await up.B.stop();
  } finally {
    if (load) await load.stop();
    for (const s of subs) s.terminate();
    for (const x of handles) await x.cleanup();
    db.drop();
    await deletePrefix(redisUrl, prefix);
  }
});
