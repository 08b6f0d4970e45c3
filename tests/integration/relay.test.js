'use strict';
// Issue 4: the Redis relay (API.md "Redis fan-out"). Every committed event is XADDed to
// `<prefix><stream>` (tenant default) or `<prefix><tenant>:<stream>` with the entry id
// `<position>-0` and the fields id, type, position, event (the stored envelope), in position
// order, exactly once — across a Redis outage, a Redis restart, and the relay leader dying.
// Read back with ioredis (tests/lib/redis.js), as a real consumer would (XRANGE,
// XREADGROUP + XACK). Each test uses its own SLUICE_REDIS_PREFIX; the outage tests use a
// private Redis from scripts/services.sh so the suite's Redis is never stopped.
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');
const svc = require('./lib/services');
// ioredis as tests/lib/redis.js sets it up: connect(url), withRedis(url, fn), xrangeAll(r, key), scanKeys, deletePrefix(url, prefix)
const { connect, withRedis, xrangeAll, scanKeys, deletePrefix } = require('../lib/redis.js');

const CATCH_UP_MS = 60000; // "no hang" bound for the relay to catch up

// ---------------------------------------------------------------- helpers

const redisUrl = () => {
  const u = process.env.SLUICE_REDIS_URL;
  assert.ok(u, 'SLUICE_REDIS_URL names the suite Redis (scripts/services.sh)');
  assert.match(u, /^redis:\/\//, 'these tests speak TCP to Redis');
  return u;
};
const newPrefix = () => `it${h.rand(4)}:`;
const typePrefix = () => 'r' + h.rand(4);

async function pub(c, env) {
  const r = await c.publish(env);
  h.assertStatus(r, 201);
  return Array.isArray(env) ? r.body.events : r.body;
}

function assertStrictlyIncreasing(ps, what) {
  for (let i = 1; i < ps.length; i++) assert.ok(ps[i] > ps[i - 1], `${what}: ${ps[i]} after ${ps[i - 1]}`);
}

function assertExactly(got, model, what) {
  assertStrictlyIncreasing(got, what);
  const want = [...model].sort((a, b) => a - b);
  if (got.length !== want.length || got.some((p, i) => p !== want[i])) {
    const gs = new Set(got);
    const ws = new Set(want);
    const missing = want.filter((p) => !gs.has(p));
    const extra = got.filter((p) => !ws.has(p));
    assert.fail(`${what}: ${got.length} entries, expected ${want.length}; missing ${JSON.stringify(missing.slice(0, 20))}${missing.length > 20 ? '…' : ''}; unexpected ${JSON.stringify(extra.slice(0, 20))}${extra.length > 20 ? '…' : ''}`);
  }
}

// Checks each entry's shape: id `<position>-0`, fields id, type, position, event.
function checkEntry(e, key) {
  const m = /^(\d+)-0$/.exec(e.id);
  assert.ok(m, `${key}: entry id ${e.id} is <position>-0`);
  assert.deepEqual([...e.order].sort(), ['event', 'id', 'position', 'type'], `${key} ${e.id}: fields ${JSON.stringify(e.order)}`);
  assert.equal(e.fields.position, m[1], `${key} ${e.id}: position field`);
  let ev;
  try { ev = JSON.parse(e.fields.event); } catch (err) { assert.fail(`${key} ${e.id}: event is JSON: ${e.fields.event.slice(0, 200)}`); }
  assert.equal(ev.position, Number(m[1]), `${key} ${e.id}: event.position`);
  assert.equal(ev.id, e.fields.id, `${key} ${e.id}: event.id = id field`);
  assert.equal(ev.type, e.fields.type, `${key} ${e.id}: event.type = type field`);
  return ev;
}

const entryPositions = (entries) => entries.map((e) => Number(e.id.split('-')[0]));

// Waits until `key` holds at least `n` entries (or an entry at `lastPosition`).
async function waitStream(url, key, { n, lastPosition, timeout = CATCH_UP_MS } = {}) {
  return h.waitFor(() => withRedis(url, async (r) => {
    const len = await r.xlen(key);
    if (n !== undefined && len < n) return false;
    if (lastPosition !== undefined) {
      const top = await r.xrevrange(key, '+', '-', 'COUNT', 1);
      if (!top.length || Number(top[0][0].split('-')[0]) < lastPosition) return false;
    }
    return true;
  }), { timeout, interval: 100, what: `${key} to hold ${n !== undefined ? n + ' entries' : 'position ' + lastPosition}` });
}

// Finds a numeric relay_lag anywhere in a JSON document.
function findRelayLag(doc) {
  if (!doc || typeof doc !== 'object') return undefined;
  if ('relay_lag' in doc) return doc.relay_lag;
  for (const v of Object.values(doc)) {
    const x = findRelayLag(v);
    if (x !== undefined) return x;
  }
  return undefined;
}

// ---------------------------------------------------------------- a private Redis

const runDir = fs.mkdtempSync(path.join(h.TMP, 'redis-outage-'));
let privateRedis = false;

function services(cmd) { return svc.services(runDir, cmd, 'redis', { timeout: 120000 }); }

async function startPrivateRedis() {
  await services('start');
  privateRedis = true;
  const env = fs.readFileSync(path.join(runDir, 'env'), 'utf8');
  const m = /SLUICE_REDIS_URL=(\S+)/.exec(env);
  assert.ok(m, `SLUICE_REDIS_URL in ${runDir}/env: ${env}`);
  return m[1];
}

after(async () => {
  if (privateRedis) await services('clean').catch((e) => console.error(String(e)));
  fs.rmSync(runDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

describe('relay into Redis Streams', () => {
  let s;
  let c;
  let prefix;
  let url;
  before(async () => {
    url = redisUrl();
    prefix = newPrefix();
    s = await h.startSluice({ name: 'relay', env: { SLUICE_REDIS_URL: url, SLUICE_REDIS_PREFIX: prefix } });
    c = s.client();
  });
  after(async () => {
    if (s) await s.stop().finally(() => s.cleanup());
    await deletePrefix(url, prefix);
  });

  test('every event exactly once, in position order, id <position>-0, fields id/type/position/event = the stored envelope', { timeout: 180000 }, async () => {
    const a = typePrefix();
    const b = typePrefix();
    const kb = await h.createKey(s, 'tenant-rl', ['publish', 'read']);
    const B = s.client(kb.token);
    const sent = []; // {tenant, stream, position, id}
    const note = (tenant, res) => { for (const x of Array.isArray(res) ? res : [res]) sent.push({ tenant, ...x }); };
    for (let i = 0; i < 40; i++) note('default', await pub(c, { type: `${a}.one`, data: { i, s: 'héllo "q" \\ ✓' }, key: 'k' + (i % 3), metadata: { m: i } }));
    note('default', await pub(c, Array.from({ length: 300 }, (_, i) => ({ type: i % 2 ? `${a}.two` : `${b}.one`, data: { i } }))));
    note('default', await pub(c, Array.from({ length: 20 }, (_, i) => ({ type: `${b}.custom`, stream: `custom.${b}`, data: { i } }))));
    note('tenant-rl', await pub(B, Array.from({ length: 15 }, (_, i) => ({ type: `${a}.one`, data: { i } }))));
    // concurrent publishers too
    await Promise.all(Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 25; i++) note(w === 3 ? 'tenant-rl' : 'default', await pub(w === 3 ? B : c, { type: `${a}.conc`, data: { w, i } }));
    }));

    const byKey = new Map();
    for (const x of sent) {
      const key = x.tenant === 'default' ? `${prefix}${x.stream}` : `${prefix}${x.tenant}:${x.stream}`;
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key).push(x);
    }
    assert.deepEqual([...byKey.keys()].sort(), [`${prefix}${a}.events`, `${prefix}${b}.events`, `${prefix}custom.${b}`, `${prefix}tenant-rl:${a}.events`].sort());
    for (const [key, xs] of byKey) await waitStream(url, key, { lastPosition: Math.max(...xs.map((x) => x.position)) });

    await withRedis(url, async (r) => {
      for (const [key, xs] of byKey) {
        const entries = await xrangeAll(r, key);
        assertExactly(entryPositions(entries), xs.map((x) => x.position), key);
        const want = new Map(xs.map((x) => [x.position, x]));
        for (const e of entries) {
          const ev = checkEntry(e, key);
          assert.equal(ev.id, want.get(ev.position).id, `${key}: entry ${e.id} is event ${want.get(ev.position).id}`);
        }
        // a sample compared in full with the stored envelope
        for (const e of [entries[0], entries[Math.floor(entries.length / 2)], entries[entries.length - 1]]) {
          const ev = JSON.parse(e.fields.event);
          const client = ev.tenant_id === 'default' ? c : B;
          const stored = h.assertStatus(await client.get('/v1/events/' + encodeURIComponent(ev.id)), 200);
          assert.deepEqual(ev, stored, `${key} ${e.id}: the event field is the stored envelope`);
        }
      }
      // nothing else was written as a stream under the prefix (no stream for another tenant's name)
      for (const k of await scanKeys(r, prefix + '*')) {
        if ((await r.type(k)) === 'stream') assert.ok(byKey.has(k), `unexpected stream ${k}`);
      }
    });
  });

  test('a real consumer group (XREADGROUP + XACK) reads every event once, in order, live as well as backlog', { timeout: 180000 }, async () => {
    const a = typePrefix();
    const key = `${prefix}${a}.events`;
    const backlog = await pub(c, Array.from({ length: 120 }, (_, i) => ({ type: `${a}.x`, data: { i } })));
    await waitStream(url, key, { n: 120 });
    const got = [];
    const consumer = await connect(url);
    try {
      await consumer.xgroup('CREATE', key, 'g1', '0');
      let done = false;
      const reading = (async () => {
        while (!done) {
          const rep = await consumer.xreadgroup('GROUP', 'g1', 'c1', 'COUNT', 37, 'BLOCK', 200, 'STREAMS', key, '>');
          if (!rep) continue;
          for (const [, entries] of rep) {
            for (const [id, kv] of entries) {
              const fields = {};
              for (let i = 0; i < kv.length; i += 2) fields[kv[i]] = kv[i + 1];
              got.push({ id, fields });
              await consumer.xack(key, 'g1', id);
            }
          }
        }
      })();
      const live = [];
      for (let i = 0; i < 30; i++) live.push(await pub(c, { type: `${a}.y`, data: { i } }));
      live.push(...await pub(c, Array.from({ length: 50 }, (_, i) => ({ type: `${a}.z`, data: { i } }))));
      const last = live[live.length - 1].position;
      await h.waitFor(() => got.length && Number(got[got.length - 1].id.split('-')[0]) >= last, { timeout: CATCH_UP_MS, what: 'the consumer to read the last event' });
      done = true;
      await reading;
      assertExactly(entryPositions(got), [...backlog, ...live].map((x) => x.position), 'consumer group g1');
      for (const e of got) checkEntry({ ...e, order: Object.keys(e.fields) }, key);
      const pending = await consumer.xpending(key, 'g1');
      assert.equal(pending[0], 0, 'nothing left pending');
    } finally { consumer.disconnect(); }
  });

  test('relay_lag in /ready and /v1/info: an integer, 0 once Redis has caught up', async () => {
    const a = typePrefix();
    const last = (await pub(c, Array.from({ length: 10 }, (_, i) => ({ type: `${a}.x`, data: { i } }))))[9];
    await waitStream(url, `${prefix}${a}.events`, { lastPosition: last.position });
    for (const p of ['/ready', '/v1/info']) {
      const lag = await h.waitFor(async () => {
        const r = await c.get(p, { token: p === '/ready' ? null : undefined });
        h.assertStatus(r, 200);
        const v = findRelayLag(r.body);
        assert.ok(Number.isInteger(v) && v >= 0, `${p} has an integer relay_lag: ${r.text}`);
        return v === 0 ? 'zero' : false;
      }, { timeout: CATCH_UP_MS, what: `${p} relay_lag 0` });
      assert.equal(lag, 'zero');
    }
  });
});

describe('trimming and shutdown', () => {
  test('SLUICE_REDIS_MAXLEN trims a stream approximately, keeping the newest entries', { timeout: 120000 }, async () => {
    const url = redisUrl();
    const prefix = newPrefix();
    const t = await h.startSluice({ name: 'relay-maxlen', env: { SLUICE_REDIS_URL: url, SLUICE_REDIS_PREFIX: prefix, SLUICE_REDIS_MAXLEN: '100' } });
    try {
      const a = typePrefix();
      const all = [];
      for (let b = 0; b < 4; b++) all.push(...await pub(t.client(), Array.from({ length: 500 }, (_, i) => ({ type: `${a}.x`, data: { b, i } }))));
      const key = `${prefix}${a}.events`;
      await waitStream(url, key, { lastPosition: all[all.length - 1].position });
      await withRedis(url, async (r) => {
        const entries = await xrangeAll(r, key);
        assert.ok(entries.length >= 100, `at least MAXLEN entries kept: ${entries.length}`);
        assert.ok(entries.length <= 400, `trimmed near MAXLEN 100 (MAXLEN ~): ${entries.length} of 2000`);
        assertExactly(entryPositions(entries), all.slice(all.length - entries.length).map((x) => x.position), 'the newest entries');
      });
      await t.stop();
    } finally {
      await t.cleanup();
      await deletePrefix(url, prefix);
    }
  });

  test('SIGTERM flushes the relay: events committed before the stop are in Redis', { timeout: 120000 }, async () => {
    const url = redisUrl();
    const prefix = newPrefix();
    const t = await h.startSluice({ name: 'relay-term', env: { SLUICE_REDIS_URL: url, SLUICE_REDIS_PREFIX: prefix } });
    try {
      const a = typePrefix();
      const all = [];
      await Promise.all(Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; i < 5; i++) all.push(...await pub(t.client(), Array.from({ length: 200 }, (_, j) => ({ type: `${a}.x`, data: { w, i, j } }))));
      }));
      await t.stop();
      await withRedis(url, async (r) => {
        assertExactly(entryPositions(await xrangeAll(r, `${prefix}${a}.events`)), all.map((x) => x.position), 'relayed by the time sluice exited');
      });
    } finally {
      await t.cleanup();
      await deletePrefix(url, prefix);
    }
  });
});

// Publishes from `writers` concurrent loops until stop() is called; every publish must be a
// 201. Returns {stop, acked, errors}.
function startWriters(clients, tp, { batchEvery = 4 } = {}) {
  const acked = [];
  const errors = [];
  let running = true;
  const loops = clients.map(async (cl, w) => {
    let i = 0;
    while (running) {
      const batch = i % batchEvery === batchEvery - 1;
      const envs = Array.from({ length: batch ? 25 : 1 }, (_, j) => ({ type: `${tp}.${j % 2 ? 'odd' : 'even'}`, data: { w, i, j } }));
      try {
        const r = await cl.publish(batch ? envs : envs[0], { timeout: 15000 });
        if (r.status !== 201) errors.push(h.describeRes(r));
        else acked.push(...(batch ? r.body.events : [r.body]));
      } catch (e) {
        errors.push(String(e));
        if (cl.stopOnError) return;
      }
      i++;
    }
  });
  return { acked, errors, async stop() { running = false; await Promise.all(loops); } };
}

describe('Redis outage', () => {
  // persist: save what Redis holds before stopping it (a Redis with persistence); else it
  // comes back empty (no persistence), and what it held before the stop is gone.
  for (const persist of [true, false]) {
    test(`Redis stopped mid-load and restarted ${persist ? 'with its data' : 'empty'}: publishing never fails; every event arrives exactly once`, { timeout: 300000 }, async () => {
      const url = await startPrivateRedis(); // (again, if an earlier test left it stopped)
      const prefix = newPrefix();
      const t = await h.startSluice({ name: 'relay-outage', env: { SLUICE_REDIS_URL: url, SLUICE_REDIS_PREFIX: prefix } });
      const tp = typePrefix();
      const key = `${prefix}${tp}.events`;
      const w = startWriters([t.client(), t.client(), t.client()], tp);
      let snapshot = [];
      try {
        await waitStream(url, key, { n: 50 });
        await h.sleep(500);
        // Freeze writes, note exactly what Redis holds, then stop it.
        await withRedis(url, async (r) => {
          await r.client('PAUSE', 20000, 'WRITE');
          snapshot = await xrangeAll(r, key);
          if (persist) await r.save();
        });
        await services('stop');
        const during = w.acked.length;
        await h.sleep(2500); // publishing goes on with Redis down
        const lagDown = findRelayLag(h.assertStatus(await t.client().get('/v1/info'), 200));
        assert.ok(lagDown === null || lagDown === undefined || (Number.isInteger(lagDown) && lagDown > 0), `relay_lag while Redis is down: ${lagDown}`);
        assert.ok(w.acked.length > during, `events were committed while Redis was down (${w.acked.length - during})`);
        await services('start');
        await h.sleep(1000);
      } finally {
        await w.stop();
      }
      try {
        assert.deepEqual(w.errors, [], 'every publish answered 201 throughout');
        const model = w.acked.map((x) => x.position);
        assert.ok(snapshot.length >= 50 && snapshot.length < model.length, `Redis held ${snapshot.length} of ${model.length} before the stop`);
        await waitStream(url, key, { lastPosition: Math.max(...model) });
        const finalEntries = await withRedis(url, (r) => xrangeAll(r, key));
        for (const e of finalEntries) checkEntry(e, key);
        const got = entryPositions(finalEntries);
        const cut = entryPositions(snapshot).pop();
        if (persist) {
          assertExactly(got, model, 'after the outage, the stream holds every event once');
          assert.deepEqual(finalEntries.slice(0, snapshot.length).map((e) => e.id), snapshot.map((e) => e.id), 'what Redis held before is unchanged');
        } else {
          // A consumer read up to `cut` before the outage: from there on it must find every
          // later event exactly once; whatever was re-sent below `cut` is in order, no duplicate.
          assertExactly(got.filter((p) => p > cut), model.filter((p) => p > cut), `after the restart, every event past ${cut}`);
          assertStrictlyIncreasing(got, 'the new stream');
          const m = new Set(model);
          assert.ok(got.every((p) => m.has(p)), 'nothing that was not published');
        }
        const lag = await h.waitFor(async () => {
          const v = findRelayLag(h.assertStatus(await t.client().get('/v1/info'), 200));
          return v === 0 ? 'zero' : false;
        }, { timeout: CATCH_UP_MS, what: 'relay_lag 0 after Redis returned' });
        assert.equal(lag, 'zero');
        await t.stop();
      } finally {
        await t.cleanup();
        await deletePrefix(url, prefix);
      }
    });
  }
});

describe('relay leader failover', () => {
  test('the leader killed with SIGKILL: the other instance takes over, nothing lost or duplicated', { timeout: 300000 }, async () => {
    const url = redisUrl();
    const prefix = newPrefix();
    const db = await h.freshDatabase();
    const adminToken = 'adm_' + h.rand(16);
    const env = { SLUICE_REDIS_URL: url, SLUICE_REDIS_PREFIX: prefix };
    const handles = [];
    try {
      const a = await h.startSluice({ name: 'relay-a', dbUrl: db.url, adminToken, env });
      handles.push(a);
      const tp = typePrefix();
      const key = `${prefix}${tp}.events`;
      // A relays alone first, so it is the leader
      const first = await pub(a.client(), { type: `${tp}.even`, data: { first: true } });
      await waitStream(url, key, { lastPosition: first.position });
      const b = await h.startSluice({ name: 'relay-b', dbUrl: db.url, adminToken, env });
      handles.push(b);
      const infoA = h.assertStatus(await a.client().get('/v1/info'), 200);
      const infoB = h.assertStatus(await b.client().get('/v1/info'), 200);
      if ('relay_leader' in infoA) {
        assert.equal(infoA.relay_leader, true, 'A, started first, leads');
        assert.equal(infoB.relay_leader, false, 'B follows');
      }
      const ca = a.client();
      ca.stopOnError = true;
      const w = startWriters([ca, ca, b.client(), b.client()], tp, { batchEvery: 3 });
      try {
        await h.sleep(1500);
        await a.kill9();
        await h.sleep(2500);
      } finally {
        await w.stop();
      }
      // B's writers must never have failed; A's may have failed once A died
      assert.ok(w.acked.length > 50, 'events were published');
      // the source of truth: every event in the database (A may have committed without answering)
      const { events } = await h.readAllPages(b.client(), {}, { limit: 1000 });
      const model = events.map((e) => e.position);
      for (const x of w.acked) assert.ok(model.includes(x.position), `acknowledged ${x.position} is stored`);
      if ('relay_leader' in infoB) {
        await h.waitFor(async () => h.assertStatus(await b.client().get('/v1/info'), 200).relay_leader === true,
          { timeout: 30000, what: 'B to become the relay leader' });
      }
      await waitStream(url, key, { lastPosition: Math.max(...model), timeout: 30000 });
      const entries = await withRedis(url, (r) => xrangeAll(r, key));
      for (const e of entries) checkEntry(e, key);
      assertExactly(entryPositions(entries), model, 'Redis after the failover');
      await h.waitFor(async () => findRelayLag(h.assertStatus(await b.client().get('/v1/info'), 200)) === 0,
        { timeout: CATCH_UP_MS, what: 'relay_lag 0 on B' });
      await b.stop();
    } finally {
      for (const x of handles) await x.cleanup();
      db.drop();
      await deletePrefix(url, prefix);
    }
  });
});
