'use strict';
// Two instances on one database and one Redis take concurrent bursts of publishes (singles
// with and without a client id, batches, keyed events) while WebSocket subscribers on both
// instances listen: live-only ones made before the first publish, from_position 0 ones, and
// ones that join in the middle of a burst (live-only and from a mid position). In a fresh
// database positions run 1, 2, 3, … with no hole, so each subscriber must receive exactly
// (its start, head], in strictly increasing order, every event once, each the stored envelope
// at its position — whichever instance committed it. The relay (one leader) puts every
// stored event in Redis once, entry id <position>-0.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');
const f = require('./lib/flow');
const { withRedis, xrangeAll, deletePrefix } = require('../lib/redis.js');

const WRITERS_PER_INSTANCE = 4;
const ROUNDS = 3;
const REQUESTS_PER_WRITER = 60; // per round

test('two instances, concurrent bursts to both: every WebSocket subscriber on either gets every event once, gap-free, in order', { timeout: 300000 }, async (t) => {
  const redisUrl = process.env.SLUICE_REDIS_URL;
  assert.ok(redisUrl, 'SLUICE_REDIS_URL names the suite Redis');
  const prefix = `itmi${h.rand(4)}:`;
  const db = await h.freshDatabase();
  const adminToken = 'adm_' + h.rand(16);
  // Subscribers here read as fast as node lets them; a burst of batches may still queue
  // thousands of messages at once: room enough that no subscriber is cut as slow (1013).
  const env = { SLUICE_REDIS_URL: redisUrl, SLUICE_REDIS_PREFIX: prefix, SLUICE_WS_QUEUE_MESSAGES: '200000', SLUICE_WS_QUEUE_BYTES: String(512 << 20) };
  const handles = [];
  const subs = [];
  try {
    const started = await Promise.allSettled([
      h.startSluice({ name: 'mi-a', dbUrl: db.url, adminToken, env }),
      h.startSluice({ name: 'mi-b', dbUrl: db.url, adminToken, env }),
    ]);
    for (const r of started) if (r.status === 'fulfilled') handles.push(r.value);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    const [a, b] = handles;
    const inst = { a, b };

    // Before any publish: a live-only and a from-0 subscriber on each instance.
    const early = {};
    for (const [name, s] of Object.entries(inst)) {
      early[`live-${name}`] = await f.Subscriber.open(s, { id: `live-${name}` });
      early[`zero-${name}`] = await f.Subscriber.open(s, { id: `zero-${name}`, from_position: 0 });
    }
    subs.push(...Object.values(early));
    for (const [k, s] of Object.entries(early)) assert.equal(s.startPosition, 0, `${k} starts at 0 in a fresh database`);

    // One burst: every writer of both instances at once, each a fixed number of requests.
    const acked = new Map(); // tag → ack
    const keyOf = (w) => `key-${w}`;
    const burst = (round) => Promise.all(Array.from({ length: 2 * WRITERS_PER_INSTANCE }, async (_, w) => {
      const c = (w % 2 ? b : a).client();
      for (let n = 0; n < REQUESTS_PER_WRITER; n++) {
        const tag = `r${round}-w${w}-${n}`;
        const kind = (n + w) % 5;
        let envs;
        if (kind === 0) envs = [{ type: 'mi.single', data: { tag } }]; // server-made id: one round trip
        else if (kind === 1) envs = [{ id: `id-${tag}`, type: 'mi.single', data: { tag } }];
        else if (kind === 2) envs = [{ type: 'mi.keyed', key: keyOf(w), data: { tag } }];
        else {
          const size = 2 + ((n * 7 + w) % 39);
          envs = Array.from({ length: size }, (_, j) => ({
            ...(kind === 3 ? { id: `id-${tag}-${j}` } : {}),
            type: j % 3 ? 'mi.batch' : 'mi.other', stream: j % 4 === 1 ? 'mi.side' : undefined,
            data: { tag: `${tag}-${j}` },
          }));
        }
        const r = await c.publish(envs.length === 1 ? envs[0] : envs);
        h.assertStatus(r, 201);
        (envs.length === 1 ? [r.body] : r.body.events).forEach((x, j) => acked.set(envs[j].data.tag, x));
      }
    }));

    const late = {};
    for (let round = 0; round < ROUNDS; round++) {
      const running = burst(round);
      if (round === 1) {
        // Join in the middle of a burst: live-only, and from a position the log is past.
        await h.waitFor(() => acked.size > 0, { timeout: 30000, what: 'the second burst under way' });
        await h.sleep(30);
        const mid = Math.max(1, Math.floor(f.headOf(db.url) / 2));
        for (const [name, s] of Object.entries(inst)) {
          late[`join-live-${name}`] = await f.Subscriber.open(s, { id: `join-live-${name}` });
          late[`join-mid-${name}`] = await f.Subscriber.open(s, { id: `join-mid-${name}`, from_position: mid });
        }
        subs.push(...Object.values(late));
        late.mid = mid;
      }
      await running;
      await h.sleep(200); // a pause between bursts: the next one starts from an idle appender
    }

    // What is stored: 1 … N, every acknowledged event where its 201 said, nothing twice.
    const rows = f.storedRows(db.url);
    const N = rows.length;
    f.assertStoreSane(rows);
    assert.equal(acked.size, N, 'every stored event was acknowledged (no failure was allowed)');
    const byTag = new Map(rows.map((r) => [r.tag, r]));
    for (const [tag, ack] of acked) {
      const r = byTag.get(tag);
      assert.ok(r, `${tag} got a 201 (${ack.id} at ${ack.position}) but is not stored`);
      assert.equal(r.position, ack.position, `${tag}: stored at the position its 201 named`);
      assert.equal(r.id, ack.id, `${tag}: stored id`);
    }
    const idAt = rows.map((r) => r.id);

    // Every subscriber: exactly (start, N], each event the one stored at its position.
    const all = { ...early, ...Object.fromEntries(Object.entries(late).filter(([k]) => k !== 'mid')) };
    await Promise.all(Object.values(all).map((s) => s.waitPosition(N)));
    await h.sleep(300); // anything after N would be a duplicate or an invention: let it show
    for (const [k, s] of Object.entries(all)) {
      const from = k.startsWith('join-mid') ? late.mid : s.startPosition;
      if (k.startsWith('join-mid')) assert.equal(s.startPosition, late.mid, `${k}: subscribed names from_position`);
      f.assertGapFree(s.positions(), from, N, `subscriber ${k}`);
      s.events.forEach((e) => assert.equal(e.id, idAt[e.position - 1], `${k}: the event at ${e.position} is the stored one`));
      assert.equal(s.closeInfo, null, `${k} still connected`);
    }
    // The live-only joiners started inside the burst, not at its end (else they proved little).
    for (const name of ['a', 'b']) {
      const s = late[`join-live-${name}`];
      assert.ok(s.startPosition < N, `join-live-${name} subscribed at ${s.startPosition}, before the head ${N}`);
    }
    // Versions of each writer's key: 1 … n, delivered in order on every from-0 subscriber.
    for (const k of ['zero-a', 'zero-b']) {
      const byKey = new Map();
      for (const e of early[k].events) if (e.key) byKey.set(e.key, [...(byKey.get(e.key) || []), e.version]);
      assert.ok(byKey.size > 0);
      for (const [key, vs] of byKey) assert.deepEqual(vs, vs.map((_, i) => i + 1), `${k}: versions of ${key}`);
    }

    // Redis: every stored event once, entry id <position>-0, in position order per stream.
    const streams = [...new Set(rows.map((r) => r.stream))];
    await withRedis(redisUrl, async (r) => {
      await h.waitFor(async () => {
        let n = 0;
        for (const s of streams) n += await r.xlen(prefix + s);
        return n >= N;
      }, { timeout: 60000, interval: 100, what: `${N} entries in Redis` });
      for (const s of streams) {
        const entries = await xrangeAll(r, prefix + s);
        for (const e of entries) {
          assert.match(e.id, /^\d+-0$/, `${prefix}${s}: entry id ${e.id}`);
          assert.equal(e.fields.id, idAt[Number(e.id.split('-')[0]) - 1], `${prefix}${s} ${e.id}: the event stored at that position`);
        }
        f.assertExactly(entries.map((e) => Number(e.id.split('-')[0])), rows.filter((x) => x.stream === s).map((x) => x.position), `Redis ${prefix}${s}`);
      }
    });

    t.diagnostic(`${N} events in ${ROUNDS} bursts from ${2 * WRITERS_PER_INSTANCE} writers; ${Object.keys(all).length} subscribers; joiners at ${late['join-live-a'].startPosition}/${late['join-live-b'].startPosition} (live), ${late.mid} (from_position)`);
    for (const s of subs) await s.shut();
    for (const x of handles) await x.stop();
  } finally {
    for (const s of subs) s.terminate();
    for (const x of handles) await x.cleanup();
    db.drop();
    await deletePrefix(redisUrl, prefix);
  }
});
